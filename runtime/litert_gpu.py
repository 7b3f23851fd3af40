"""TFLite on LiteRT's GPU accelerator alone: compile a model with `HardwareAccelerator.GPU` and
no CPU fallback, run it, and say which ops the accelerator refused when it cannot.

LiteRT 2.3's stock GPU accelerator is WebGPU (Dawn) over Vulkan. On a machine without a GPU,
Mesa's software Vulkan driver (llvmpipe/lavapipe, Mesa ≥ 25) provides the adapter; the figures
measured there are software, never device latency. Whether an adapter exists is probed once per
process in a child process (a broken driver must not take the caller down).

LiteRT reports why it refused an op only in its native log (stdout and stderr), so compiles
capture file descriptors 1 and 2 and parse them: "Following operations are not supported by GPU delegate: OP: why",
"Encountered unresolved custom op: NAME", "Node number N (OP) failed to prepare"."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import MeshportError
from .tflite import Graph


class GpuUnavailable(MeshportError):
    """No GPU accelerator here (no LiteRT WebGPU library, or no Vulkan adapter); the message says which."""


class GpuCompileError(MeshportError):
    """The model does not compile on the GPU accelerator alone; `ops` names what it refused."""

    def __init__(self, message: str, ops: list[str], log: str = ""):
        super().__init__(message)
        self.ops = ops
        self.log = log              # the runtime's native log of the compile


@dataclass(frozen=True)
class GpuDevice:
    name: str            # the adapter, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
    backend: str         # "Vulkan", "Metal", …
    software: bool       # a CPU implementation of the API (lavapipe): its latency is not a device's

    def describe(self) -> str:
        return f"{self.name} via {self.backend}" + (" (software rasteriser, not a GPU)" if self.software else "")

    def to_json(self) -> dict:
        return {"name": self.name, "backend": self.backend, "software": self.software}


_ADAPTER = re.compile(r"Selected adapter: (?P<name>.*?), arch=[^,]*, vendor=[^,]*, backend=(?P<backend>[^,]+), "
                      r"adapterType=(?P<type>[^\n]+)")
_UNSUPPORTED = re.compile(r"^([A-Z][A-Z0-9_]+): (.+)$", re.M)
_CUSTOM = re.compile(r"unresolved custom op: ([^.\s]+)")
_NODE = re.compile(r"Node number (\d+) \(([^)]+)\) failed to prepare")


@contextlib.contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """Redirect file descriptors 1 and 2 (where the C++ runtime logs: it writes to both) into a
    buffer for the block; the text is appended to the yielded list when the block ends."""
    sink: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    _libc_fflush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            _libc_fflush()          # C stdio buffers what the runtime printed: flush it into the capture
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))


def _libc_fflush() -> None:
    import ctypes
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


_teardown_registered = False


def _quiet_teardown() -> None:
    """At exit, after Python's own output, the runtime's static destructors log each accelerator
    they destroy: send file descriptors 1 and 2 to /dev/null by then."""
    global _teardown_registered
    if _teardown_registered:
        return
    import atexit

    def silence() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        _libc_fflush()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)

    atexit.register(silence)
    _teardown_registered = True


def refused_ops(log: str) -> list[str]:
    """The ops a failed GPU-only compile names in LiteRT's log ("OP: reason" lines, custom ops)."""
    ops: list[str] = []
    block = log.split("Following operations are not supported by GPU delegate:", 1)
    if len(block) == 2:
        body = block[1].split("operations will run on the CPU", 1)[0]
        ops += [f"{op}: {why.strip()}" for op, why in _UNSUPPORTED.findall(body)]
    ops += [f"CUSTOM:{name}: custom op" for name in _CUSTOM.findall(log)]
    ops += [f"op #{i} {name}: failed to prepare" for i, name in _NODE.findall(log)
            if not any(o.startswith(f"CUSTOM:{name}") for o in ops)]
    return list(dict.fromkeys(ops))


def _options(enforce_f32: bool):
    from ai_edge_litert.compiled_model import GpuOptions, HardwareAccelerator, Options
    return Options(hardware_accelerators=HardwareAccelerator.GPU, gpu_options=GpuOptions(enforce_f32=enforce_f32))


class GpuModel:
    """One model compiled for the GPU accelerator alone (inputs and outputs in signature order)."""

    def __init__(self, model: bytes | Path, *, enforce_f32: bool = False, source: str | None = None,
                 _probing: bool = False):
        if not _probing:             # the availability probe itself compiles through this class
            require_available()
        _quiet_teardown()
        self.source = source or (str(model) if isinstance(model, Path) else "<bytes>")
        self.enforce_f32 = enforce_f32
        with captured_native_output() as log:
            from ai_edge_litert.compiled_model import CompiledModel   # its import logs natively too
            try:
                if isinstance(model, (bytes, bytearray)):
                    self._model = CompiledModel.from_buffer(bytes(model), options=_options(enforce_f32))
                else:
                    self._model = CompiledModel.from_file(str(model), options=_options(enforce_f32))
                full = self._model.is_fully_accelerated()
            except RuntimeError:
                self._model, full = None, False
        text = "".join(log)
        if not full:
            ops = refused_ops(text)
            detail = "; ".join(ops) if ops else (_last_error(text) or "no reason given")
            raise GpuCompileError(f"{self.source}: does not compile on the GPU accelerator alone: {detail}", ops,
                                  text)
        self.log = text
        sig = self._model.get_signature_list()
        self.signature = next(iter(sig))
        self.input_names = list(sig[self.signature]["inputs"])
        self.output_names = list(sig[self.signature]["outputs"])
        self._in_details = self._model.get_input_tensor_details(self.signature)
        self._out_details = self._model.get_output_tensor_details(self.signature)
        self._inputs = self._model.create_input_buffers(0)
        self._outputs = self._model.create_output_buffers(0)
        self._first_run = True

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._first_run:           # the first run sets up the runtime's environment, logging natively
            self._first_run = False
            with captured_native_output():
                return self._run(feed)
        return self._run(feed)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(feed) == 1 and len(self.input_names) == 1:
            arrays = [next(iter(feed.values()))]
        else:
            missing = sorted(set(self.input_names) - set(feed))
            if missing:
                raise KeyError(f"no feed for input(s) {missing}; feeds: {sorted(feed)}")
            arrays = [feed[n] for n in self.input_names]
        for name, buf, x in zip(self.input_names, self._inputs, arrays):
            want = tuple(self._in_details[name]["shape"])
            x = np.ascontiguousarray(x, dtype=self._in_details[name]["dtype"])
            if x.shape != want:
                raise ValueError(f"input {name} expects {want}, got {x.shape}")
            buf.write(x)
        self._model.run_by_index(0, self._inputs, self._outputs)
        out = {}
        for name, buf in zip(self.output_names, self._outputs):
            d = self._out_details[name]
            out[name] = buf.read(int(np.prod(d["shape"])), d["dtype"]).reshape(d["shape"])
        return out

    def close(self) -> None:
        """Release the compiled model (the runtime logs its teardown natively: kept out of stderr)."""
        import gc
        with captured_native_output():
            self._inputs = self._outputs = []
            if self._model is not None:
                self._model.close()
                self._model = None
            gc.collect()


def _last_error(log: str) -> str | None:
    errs = [ln.strip() for ln in log.splitlines() if ln.startswith("ERROR") and "litert_compiled_model.h" not in ln]
    return errs[-1] if errs else None


# -- availability ------------------------------------------------------------------------------
_PROBE = r"""
import json, sys
from runtime.litert_gpu import _probe_in_process
print("MESHPORT_GPU_PROBE " + json.dumps(_probe_in_process()))
"""
_availability: tuple[GpuDevice | None, str] | None = None


def tiny_model() -> bytes:
    """A one-op TFLite model (y = x + x, float32 [1, 4]) built directly in the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema
    m = schema.ModelT()
    m.version = 3
    m.buffers = [schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    m.operatorCodes = [code]
    sg = schema.SubGraphT()
    sg.tensors = []
    for name in ("x", "y"):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = np.array([1, 4], np.int32), schema.TensorType.FLOAT32, 0, name.encode()
        sg.tensors.append(t)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 0], np.int32), np.array([1], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.AddOptions
    op.builtinOptions = schema.AddOptionsT()
    sg.operators, sg.inputs, sg.outputs = [op], np.array([0], np.int32), np.array([1], np.int32)
    m.subgraphs = [sg]
    return Graph(m, "tiny model").to_bytes()


def _probe_in_process() -> dict:
    """Compile and run the tiny model GPU-only here; the adapter it selected, or why not."""
    try:
        import ai_edge_litert
    except ImportError as exc:
        return {"ok": False, "reason": f"ai_edge_litert is not installed ({exc})"}
    lib = Path(ai_edge_litert.__file__).parent / "libLiteRtWebGpuAccelerator.so"
    if not lib.exists():
        return {"ok": False, "reason": f"this ai_edge_litert has no GPU accelerator ({lib.name} missing; "
                                       f"ai-edge-litert ≥ 2.3 ships it)"}
    try:
        model = GpuModel(tiny_model(), _probing=True)
    except GpuCompileError as exc:
        ok, text = False, exc.log
    else:
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        ok, text = bool(np.array_equal(model.run({"x": x})["y"], 2 * x)), model.log
        model.close()
    match = _ADAPTER.search(text)
    if not ok or match is None:
        why = ("no Vulkan adapter found (install a Vulkan driver; on a machine without a GPU, Mesa ≥ 25's "
               "software driver: Debian 12 `apt-get install -t bookworm-backports mesa-vulkan-drivers`)"
               if match is None else "the accelerator compiled but did not run a one-op model correctly")
        return {"ok": False, "reason": why}
    kind = match["type"].strip()
    return {"ok": True, "name": match["name"], "backend": match["backend"],
            "software": "CPU" in kind or "Software" in kind}


def availability() -> tuple[GpuDevice | None, str]:
    """(the GPU device, "") where the accelerator works here, else (None, why not). Cached."""
    global _availability
    if _availability is None:
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120,
                                  env=env, cwd=root)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("MESHPORT_GPU_PROBE ")), None)
            res = json.loads(line.split(" ", 1)[1]) if line else {
                "ok": False, "reason": f"the GPU probe process failed (exit {proc.returncode})"}
        except subprocess.TimeoutExpired:
            res = {"ok": False, "reason": "the GPU probe did not finish in 120 s"}
        _availability = ((GpuDevice(res["name"], res["backend"], res["software"]), "") if res["ok"]
                         else (None, res["reason"]))
    return _availability


def require_available() -> GpuDevice:
    device, why = availability()
    if device is None:
        raise GpuUnavailable(f"LiteRT GPU accelerator unavailable: {why}")
    return device


@dataclass(frozen=True)
class DynamicVerdict:
    ok: bool
    reason: str = ""
    max_rel: float | None = None     # worst |gpu − cpu| / (1 + |cpu|) over the outputs, when it ran


def dynamic_check(model: bytes, seed: int = 0, rtol: float = 1e-4) -> DynamicVerdict:
    """Compile `model` on the GPU accelerator alone (fp32 arithmetic), run it on seeded inputs and
    compare with TFLite's reference kernels on the CPU: the GPU verdict of a model with no spec.
    Float inputs are uniform in [0, 40) (index-like magnitudes), int32 inputs in [0, 5)."""
    from .runners import get_runner
    try:
        gpu = GpuModel(model, enforce_f32=True)
    except GpuCompileError as exc:
        return DynamicVerdict(False, str(exc))
    try:
        rng = np.random.default_rng(seed)

        def sample(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
            return (rng.integers(0, 5, shape) if np.issubdtype(dtype, np.integer)
                    else rng.random(shape) * 40).astype(dtype)

        with get_runner("tflite-ref")(None, model, by_signature=None) as cpu:
            feed = {n: sample(shape, dtype) for n, (shape, dtype) in cpu.input_details().items()}
            want = cpu.run_native(feed)    # with a signature: the same names the GPU side uses
        got = gpu.run(feed)
    finally:
        gpu.close()
    worst = 0.0
    for name, w in want.items():
        g = got[name]
        worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - w) / (1.0 + np.abs(w)))) if w.size else 0.0)
    if worst > rtol:
        return DynamicVerdict(False, f"GPU outputs differ from the CPU reference kernels (max rel {worst:.3g} > "
                                     f"{rtol:g})", worst)
    return DynamicVerdict(True, "", worst)


def first_gpu_divergence(model: bytes, feed: dict[str, np.ndarray], *, enforce_f32: bool = True,
                         rtol: float = 1e-3, chunk: int = 32, confirm: int = 2) -> dict | None:
    """The first op whose output the GPU accelerator computes differently from the CPU interpreter
    (both on `feed`), found by compiling copies of the model whose outputs are the float op
    outputs of one chunk of ops at a time. A divergence counts only where `confirm` of the next
    three float op outputs diverge too (a fused op's own output is not materialised on the GPU).
    None when every op output is reproduced."""
    from .runners import get_runner

    with get_runner("tflite")(None, model, preserve_all_tensors=True) as cpu:
        names = cpu.input_names
        cpu.run_native({names[0]: next(iter(feed.values()))} if len(feed) == 1 else feed)
        cpu_values = {i: v for i, _, v in cpu.tensors()}
    graph = Graph.from_bytes(model, "model")
    every_op = range(len(graph.ops))
    outs = [(op.index, t) for op in graph.ops for t in op.outputs
            if graph.tensor(t).type_name == "float32" and 0 < graph.tensor(t).rank <= 4]
    bad: list[tuple[int, int, float]] = []
    for start in range(0, len(outs), chunk):
        part = outs[start:start + chunk]
        try:
            gpu = GpuModel(graph.submodel(every_op, graph.inputs, [t for _, t in part]), enforce_f32=enforce_f32)
        except GpuCompileError:
            continue
        try:
            got = list(gpu.run(feed).values())
        finally:
            gpu.close()
        for (i, t), g in zip(part, got):
            ref = cpu_values[t]
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(g.reshape(ref.shape).astype(np.float64) - ref)
            err = float(np.nan_to_num(diff, nan=np.inf).max())        # a NaN the CPU has not is a divergence
            bad.append((i, t, err / (1.0 + float(np.abs(ref).max()))))
    for k, (i, t, rel) in enumerate(bad):
        if rel > rtol and sum(r > rtol for _, _, r in bad[k + 1:k + 4]) >= confirm:
            op = graph.ops[i]
            shapes = [list(graph.tensor(j).shape) for j in op.inputs if j >= 0]
            return {"op_index": i, "op": op.kind, "inputs": shapes, "output": list(graph.tensor(t).shape),
                    "output_name": graph.tensor(t).name, "max_rel": rel}
    return None
