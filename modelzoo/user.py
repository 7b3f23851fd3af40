"""Models that are not the zoo's: a user's ONNX file or PyTorch factory, described by a small spec
file (TOML, YAML or JSON) that gives the same `ModelSpec` the zoo's models have.

    id = "stn_classifier"                 # [A-Za-z0-9][A-Za-z0-9_.-]*, not a zoo id
    description = "spatial-transformer MNIST classifier"
    onnx = "stn.onnx"                     # or torch = "package.module:factory" (or on the command line)
    targets = ["onnx/fp32", "tflite/fp32", "tflite/fp16", "coreml/fp32", "coreml/fp16"]   # the default
    samples = "samples/"                  # optional: .npy, .npz or a directory of them / of images

    [[inputs]]                            # one input
    name = "image"
    shape = [1, 1, 28, 28]                # "N" (or null) for a dynamic batch: built for 1
    layout = "NCHW"                       # optional: NCHW / NHWC for images
    value_range = [0.0, 1.0]              # optional: the range seeded inputs are drawn from

    [[outputs]]
    name = "logits"                       # shape optional: taken from the model

    [tolerances]                          # "format/precision[/output]"; "*" for any format
    "*/fp32" = { rtol = 1e-5 }            # atol, rtol (× max|reference|) and reason
    "*/fp16" = { rtol = 2e-2, reason = "fp16 weights and arithmetic" }
    "tflite/fp16-compute" = { rtol = 2e-2 }   # the GPU accelerator's own fp16 arithmetic

Every target needs a tolerance for every output, and TFLite targets one for `fp16-compute`.

The reference of an ONNX model is the file itself on ONNX Runtime; of a factory, the module it
returns (its weights are its own). `meshport build` keeps what the model was made from in
`<build>/<id>/source/`, and every later command that is given that build directory finds the
model there again (`use_build_dir`)."""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import re
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtime.files import sha256_path

from .errors import MeshportError, RegistryError
from .spec import FORMATS, PRECISIONS, TOLERANCE_ONLY_PRECISIONS, ModelSpec, TensorSpec, Tolerance

SOURCE_DIR = "source"
SOURCE_JSON = "source.json"
SAMPLES_FILE = "samples.npz"
SOURCE_ONNX = "model.onnx"
DEFAULT_USER_TARGETS = ("onnx/fp32", "tflite/fp32", "tflite/fp16", "coreml/fp32", "coreml/fp16")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KEYS = ("id", "description", "onnx", "torch", "targets", "samples", "opset", "inputs", "outputs", "tolerances")
INPUT_KEYS = ("name", "shape", "dtype", "layout", "value_range", "channel_order", "meaning")
OUTPUT_KEYS = ("name", "shape", "meaning", "units")
TOLERANCE_KEYS = ("atol", "rtol", "reason")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class SpecFileError(MeshportError, ValueError):
    """A model spec file that cannot be read or does not describe a model; names the file and key."""


class ModelSourceError(MeshportError):
    """The model a spec points to cannot be used: not an ONNX file, a factory that fails to import
    or to build, a module whose outputs disagree with the spec."""


@dataclass(frozen=True)
class UserModel:
    """A model described by a spec file: its spec, where it comes from, and its sample inputs."""

    spec: ModelSpec
    kind: str                                   # "onnx" | "torch"
    spec_file: Path
    onnx: Path | None = None
    factory: str | None = None
    import_root: Path | None = None             # the sys.path entry the factory's module lives under
    samples: tuple[tuple[str, np.ndarray], ...] = field(default=(), repr=False)

    def build(self):
        """The reference module: ONNX Runtime on the file, or the factory's module, with named outputs."""
        if self.kind == "onnx":
            return OnnxSourceModel(self.onnx, self.spec)
        return NamedOutputs(call_factory(self.factory, self.import_root), [o.name for o in self.spec.outputs])


_USER: dict[str, UserModel] = {}
_SEARCH: list[Path] = []


# --------------------------------------------------------------------------- the spec file

def load_spec_file(path: Path | str, *, onnx: Path | str | None = None, torch: str | None = None,
                   samples: Path | str | None = None, import_root: Path | None = None) -> UserModel:
    """Read a spec file; `onnx`/`torch`/`samples` override (or supply) the file's own entries.
    Raises SpecFileError (the file, the key and what is wrong) or ModelSourceError."""
    path = Path(path)
    data = _read(path)
    where = str(path)

    def fail(msg: str) -> SpecFileError:
        return SpecFileError(f"{where}: {msg}")

    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    mid = data.get("id")
    if not isinstance(mid, str) or not ID_PATTERN.fullmatch(mid):
        raise fail(f"id must be a name of letters, digits, '_', '.' or '-' (not {mid!r})")
    base = path.parent
    onnx_path = Path(onnx) if onnx is not None else (base / data["onnx"] if isinstance(data.get("onnx"), str) else None)
    factory = torch if torch is not None else data.get("torch")
    if onnx is not None or torch is not None:   # the command line's source replaces the file's
        onnx_path, factory = (Path(onnx), None) if onnx is not None else (None, torch)
    if (onnx_path is None) == (factory is None):
        raise fail("give exactly one model source: onnx = \"FILE.onnx\" or torch = \"package.module:factory\" "
                   "(or --onnx / --torch)")
    if factory is not None and (not isinstance(factory, str) or not re.fullmatch(r"[\w.]+:[\w.]+", factory)):
        raise fail(f"torch must read \"package.module:factory\", not {factory!r}")
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise fail("inputs must be a list of exactly one input table ([[inputs]]): models with one input are "
                   "supported")
    inp = _tensor(inputs[0], INPUT_KEYS, "inputs[0]", fail, need_shape=True)
    outputs = data.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise fail("outputs must be a list of output tables ([[outputs]] with a name)")
    outs = [_tensor(o, OUTPUT_KEYS, f"outputs[{i}]", fail, need_shape=False) for i, o in enumerate(outputs)]
    targets = _targets(data.get("targets", list(DEFAULT_USER_TARGETS)), fail)
    samples_from = Path(samples) if samples is not None else (
        base / data["samples"] if isinstance(data.get("samples"), str) else None)
    sample_list = load_samples(samples_from, inp) if samples_from is not None else ()
    opset = data.get("opset")
    if opset is not None and (not isinstance(opset, int) or not 13 <= opset <= 21):
        raise fail(f"opset must be an integer in [13, 21], not {opset!r}")
    description = data.get("description", f"user model {mid}")
    if not isinstance(description, str):
        raise fail("description must be a string")
    kind = "onnx" if onnx_path is not None else "torch"
    config: dict[str, Any] = {"source": kind}
    if kind == "onnx":
        if not onnx_path.is_file():
            raise ModelSourceError(f"no such ONNX file: {onnx_path}")
        config["source_sha256"] = sha256_path(onnx_path)
    else:
        import_root = import_root or _import_root(factory)
        config["factory"] = factory
    if sample_list:
        config["samples_sha256"] = samples_digest(sample_list)
    um = UserModel(None, kind, path, onnx_path, factory, import_root, tuple(sample_list))  # type: ignore[arg-type]
    outs = _output_shapes(um, inp, outs)
    tolerances = _tolerances(data.get("tolerances"), targets, [o.name for o in outs], fail)
    try:
        spec = ModelSpec(id=mid, description=description, inputs=(inp,), outputs=tuple(outs),
                         preprocessing="as declared in the model's spec file", tolerances=tolerances, targets=targets,
                         min_onnx_opset=opset, config=config)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return replace(um, spec=spec)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise SpecFileError(f"no such spec file: {path}")
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise SpecFileError(f"{path}: a spec file is .toml, .yaml, .yml or .json (not {suffix or 'no suffix'})")
    except SpecFileError:
        raise
    except Exception as exc:  # each parser has its own error type; the message says where
        raise SpecFileError(f"{path}: not valid {suffix[1:].upper()}: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise SpecFileError(f"{path}: the file must hold a table of keys, not {type(data).__name__}")
    return data


def _tensor(d: Any, keys: tuple[str, ...], what: str, fail: Callable[[str], SpecFileError],
            need_shape: bool) -> TensorSpec:
    if not isinstance(d, dict):
        raise fail(f"{what} must be a table")
    unknown = sorted(set(d) - set(keys))
    if unknown:
        raise fail(f"{what}: unknown key(s) {', '.join(unknown)}; known: {', '.join(keys)}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise fail(f"{what}: name must be a non-empty string")
    shape = d.get("shape")
    if shape is None and not need_shape:
        dims: tuple[int | None, ...] = ()
    else:
        if not isinstance(shape, list) or not shape:
            raise fail(f"{what} ({name}): shape must be a list of dimensions")
        dims = tuple(None if (s is None or s == "N") and i == 0 else s for i, s in enumerate(shape))
        for i, s in enumerate(dims):
            if s is None:
                continue
            if not isinstance(s, int) or isinstance(s, bool) or s < 1:
                hint = " (only the batch, dimension 0, may be \"N\")" if isinstance(s, str) or s is None else ""
                raise fail(f"{what} ({name}): dimension {i} must be a positive integer, not {s!r}{hint}")
    extra: dict[str, Any] = {}
    if "dtype" in d and d["dtype"] != "float32":
        raise fail(f"{what} ({name}): dtype must be float32 (not {d['dtype']!r})")
    if "layout" in d:
        if d["layout"] not in ("NCHW", "NHWC"):
            raise fail(f"{what} ({name}): layout must be NCHW or NHWC, not {d['layout']!r}")
        if len(dims) != 4:
            raise fail(f"{what} ({name}): layout {d['layout']} needs a 4-D shape, not {list(shape)}")
        extra["layout"] = d["layout"]
    if "value_range" in d:
        vr = d["value_range"]
        if not (isinstance(vr, list) and len(vr) == 2 and all(isinstance(v, (int, float)) for v in vr)
                and vr[0] < vr[1]):
            raise fail(f"{what} ({name}): value_range must be [low, high] with low < high, not {vr!r}")
        extra["value_range"] = (float(vr[0]), float(vr[1]))
    if "channel_order" in d:
        if d["channel_order"] not in ("RGB", "BGR"):
            raise fail(f"{what} ({name}): channel_order must be RGB or BGR")
        extra["channel_order"] = d["channel_order"]
    for k in ("meaning", "units"):
        if k in d:
            if not isinstance(d[k], str):
                raise fail(f"{what} ({name}): {k} must be a string")
            extra[k] = d[k]
    return TensorSpec(name, dims, **extra)


def _targets(raw: Any, fail) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise fail("targets must be a list like [\"onnx/fp32\", \"tflite/fp16\"]")
    out = []
    for t in raw:
        parts = t.split("/") if isinstance(t, str) else []
        if len(parts) != 2 or parts[0] not in FORMATS[1:] or parts[1] not in PRECISIONS:
            raise fail(f"target {t!r} is not FORMAT/PRECISION with a format in {', '.join(FORMATS[1:])} and a "
                       f"precision in {', '.join(PRECISIONS)}")
        if tuple(parts) not in out:
            out.append(tuple(parts))
    if ("onnx", "fp32") not in out:     # every other format is made from (or checked against) it
        out.insert(0, ("onnx", "fp32"))
    return tuple(out)


def _tolerances(raw: Any, targets, outputs: list[str], fail) -> dict[tuple[str, str, str], Tolerance]:
    if not isinstance(raw, dict) or not raw:
        raise fail("tolerances must be a table of \"format/precision[/output]\" = { atol = …, rtol = … }")
    formats = sorted({f for f, _ in targets})
    out: dict[tuple[str, str, str], Tolerance] = {}
    for key, value in raw.items():
        parts = key.split("/")
        if len(parts) not in (2, 3):
            raise fail(f"tolerance key {key!r} is not \"format/precision\" or \"format/precision/output\"")
        fmt, prec = parts[0], parts[1]
        name = parts[2] if len(parts) == 3 else "*"
        if fmt != "*" and fmt not in FORMATS[1:]:
            raise fail(f"tolerance {key!r}: unknown format {fmt!r}; known: *, {', '.join(FORMATS[1:])}")
        if prec not in PRECISIONS + TOLERANCE_ONLY_PRECISIONS:
            raise fail(f"tolerance {key!r}: unknown precision {prec!r}; known: "
                       f"{', '.join(PRECISIONS + TOLERANCE_ONLY_PRECISIONS)}")
        if name != "*" and name not in outputs:
            raise fail(f"tolerance {key!r}: the spec has no output {name!r}; outputs: {', '.join(outputs)}")
        if not isinstance(value, dict) or set(value) - set(TOLERANCE_KEYS):
            raise fail(f"tolerance {key!r} must be a table with keys among {', '.join(TOLERANCE_KEYS)}")
        bounds = {k: value[k] for k in ("atol", "rtol") if k in value}
        if not bounds:
            raise fail(f"tolerance {key!r} bounds nothing: give atol and/or rtol")
        for k, v in bounds.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < float("inf"):
                raise fail(f"tolerance {key!r}: {k} must be a finite number ≥ 0, not {v!r}")
        if not isinstance(value.get("reason", ""), str):
            raise fail(f"tolerance {key!r}: reason must be a string")
        tol = Tolerance(atol=_num(bounds.get("atol")), rtol=_num(bounds.get("rtol")), reason=value.get("reason", ""))
        for f in (formats if fmt == "*" else [fmt]):
            if prec in TOLERANCE_ONLY_PRECISIONS and f != "tflite":
                continue
            k = (f, prec, name)
            if k in out and fmt == "*":
                continue            # a format's own entry wins over the wildcard, whichever comes first
            out[k] = tol
    need = [(f, p) for f, p in targets] + ([("tflite", "fp16-compute")] if any(f == "tflite" for f, _ in targets) else [])
    missing = [f"{f}/{p}" + ("" if len(outputs) == 1 else f"/{o}") for f, p in need for o in outputs
               if (f, p, o) not in out and (f, p, "*") not in out]
    if missing:
        raise fail("no tolerance for " + ", ".join(missing)
                   + " (every target needs one for every output; TFLite targets also need \"tflite/fp16-compute\", "
                     "the GPU accelerator's fp16 arithmetic)")
    return out


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


# --------------------------------------------------------------------------- samples

def load_samples(path: Path, inp: TensorSpec) -> list[tuple[str, np.ndarray]]:
    """Sample inputs from a .npy (one sample, or a stack of them along the batch), a .npz (each key)
    or a directory of those and of images (resized to the input, scaled to its value range)."""
    shape = tuple(1 if d is None else d for d in inp.shape)
    if not path.exists():
        raise SpecFileError(f"no such samples file or directory: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    out: list[tuple[str, np.ndarray]] = []
    for f in files:
        suffix = f.suffix.lower()
        if suffix == ".npy":
            arrays = [(f.stem, _np_load(f))]
        elif suffix == ".npz":
            with _np_load(f) as z:
                arrays = [(f"{f.stem}-{k}" if path.is_dir() else k, z[k]) for k in z.files]
        elif suffix in IMAGE_SUFFIXES:
            arrays = [(f.stem, _image_sample(f, inp, shape))]
        else:
            if path.is_dir():
                continue
            raise SpecFileError(f"{f}: samples are .npy, .npz or images ({', '.join(IMAGE_SUFFIXES)})")
        for name, a in arrays:
            out += _split(name, np.asarray(a), shape, f)
    if not out:
        raise SpecFileError(f"{path}: no samples found (.npy, .npz or images)")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise SpecFileError(f"{path}: two samples are named alike ({names})")
    return out


def _np_load(f: Path):
    try:
        return np.load(f, allow_pickle=False)
    except Exception as exc:
        raise SpecFileError(f"{f}: not a NumPy file: {exc}".splitlines()[0]) from None


def _split(name: str, a: np.ndarray, shape: tuple[int, ...], f: Path) -> list[tuple[str, np.ndarray]]:
    if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
        raise SpecFileError(f"{f}: sample {name!r} must hold finite numbers")
    a = a.astype(np.float32)
    if a.shape == shape:
        return [(name, a)]
    if a.shape == shape[1:]:
        return [(name, a[None])]
    if a.ndim == len(shape) and a.shape[1:] == shape[1:]:
        return [(f"{name}-{i}", a[i:i + 1].copy()) for i in range(a.shape[0])]
    raise SpecFileError(f"{f}: sample {name!r} has shape {list(a.shape)}; the input takes {list(shape)} "
                        f"(or a stack of them)")


def _image_sample(f: Path, inp: TensorSpec, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image
    if inp.layout not in ("NCHW", "NHWC"):
        raise SpecFileError(f"{f}: an image sample needs the input's layout (NCHW or NHWC) in the spec")
    c, h, w = (shape[1], shape[2], shape[3]) if inp.layout == "NCHW" else (shape[3], shape[1], shape[2])
    if c not in (1, 3):
        raise SpecFileError(f"{f}: an image sample needs 1 or 3 channels; the input has {c}")
    try:
        with Image.open(f) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32).reshape(h, w, c) / 255.0
    except OSError as exc:
        raise SpecFileError(f"{f}: not a readable image: {exc}") from None
    if c == 3 and inp.channel_order == "BGR":
        a = a[..., ::-1]
    lo, hi = inp.value_range or (0.0, 1.0)
    a = lo + (hi - lo) * a
    return (a.transpose(2, 0, 1) if inp.layout == "NCHW" else a)[None].astype(np.float32)


def samples_digest(samples) -> str:
    h = hashlib.sha256()
    for name, a in samples:
        h.update(name.encode())
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()


def samples_of(spec: ModelSpec) -> list[tuple[str, np.ndarray]]:
    """The sample inputs of a user model (none for the zoo's models)."""
    um = _USER.get(spec.id)
    return list(um.samples) if um is not None and um.spec.sha256() == spec.sha256() else []


# --------------------------------------------------------------------------- the models

def call_factory(factory: str, import_root: Path | None = None):
    """The module `package.module:factory()` returns; ModelSourceError if it cannot be imported,
    fails, or returns something that is not a torch module."""
    import torch
    module_name, _, attr = factory.partition(":")
    obj = _import(module_name, import_root)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelSourceError(f"{module_name} has no {attr!r} (factory {factory})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelSourceError(f"{factory} is not callable")
    try:
        model = obj()
    except Exception as exc:
        raise ModelSourceError(f"{factory}() failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelSourceError(f"{factory}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _import(module_name: str, import_root: Path | None):
    roots = [str(p) for p in (import_root, Path.cwd()) if p is not None and str(p) not in sys.path]
    sys.path[:0] = roots
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise ModelSourceError(f"cannot import {module_name}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    finally:
        for r in roots:
            if r in sys.path:
                sys.path.remove(r)


def _import_root(factory: str) -> Path | None:
    """The sys.path entry the factory's module was found under (None for a namespace or built-in)."""
    module_name = factory.partition(":")[0]
    mod = _import(module_name, None)
    file = getattr(mod, "__file__", None)
    if not file:
        return None
    p = Path(file).resolve()
    depth = module_name.count(".") + (1 if p.name == "__init__.py" else 0)
    return p.parents[depth]


def _output_shapes(um: UserModel, inp: TensorSpec, outs: list[TensorSpec]) -> list[TensorSpec]:
    """The outputs with their shapes: declared ones are checked against the model's, missing ones
    taken from it (one run on zeros, batch 1)."""
    shape = tuple(1 if d is None else d for d in inp.shape)
    got = _probe(um, inp.name, shape, [o.name for o in outs])
    fixed = []
    for o in outs:
        have = got[o.name]
        if o.shape and tuple(1 if d is None else d for d in o.shape) != have:
            raise SpecFileError(f"{um.spec_file}: output {o.name} is declared {list(o.shape)}; the model gives "
                                f"{list(have)} for input {list(shape)}")
        fixed.append(o if o.shape else replace(o, shape=have))
    return fixed


def _probe(um: UserModel, in_name: str, shape, names: list[str]) -> dict[str, tuple[int, ...]]:
    x = np.zeros(shape, np.float32)
    if um.kind == "onnx":
        sess = _ort_session(um.onnx)
        ins = [i.name for i in sess.get_inputs()]
        if ins != [in_name]:
            raise ModelSourceError(f"{um.onnx} has inputs {ins}; the spec declares one: {in_name}")
        have = [o.name for o in sess.get_outputs()]
        missing = [n for n in names if n not in have]
        if missing:
            raise ModelSourceError(f"{um.onnx} has no output(s) {missing}; its outputs: {have}")
        try:
            arrays = sess.run(names, {in_name: x})
        except Exception as exc:
            raise ModelSourceError(f"{um.onnx} does not run on input {list(shape)}: {exc}".splitlines()[0]) from None
        return {n: tuple(a.shape) for n, a in zip(names, arrays)}
    import torch
    module = NamedOutputs(call_factory(um.factory, um.import_root), names)
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return {n: tuple(v.shape) for n, v in out.items()}


def _ort_session(path: Path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelSourceError(f"{path} is not an ONNX model ONNX Runtime can load: {exc}".splitlines()[0]) from None


@functools.cache
def _named_outputs_class():
    import torch

    class NamedOutputsImpl(torch.nn.Module):
        """A factory's module with its outputs by the spec's names (a tensor, a tuple or a dict)."""

        def __init__(self, model: torch.nn.Module, names: list[str]):
            super().__init__()
            self.model, self.names = model, list(names)

        def forward(self, x):
            out = self.model(x)
            if isinstance(out, torch.Tensor):
                out = (out,)
            if isinstance(out, dict):
                missing = [n for n in self.names if n not in out]
                if missing:
                    raise ModelSourceError(f"the model's outputs {sorted(out)} lack {missing}")
                return {n: out[n] for n in self.names}
            if not isinstance(out, (tuple, list)) or len(out) != len(self.names) or not all(
                    isinstance(t, torch.Tensor) for t in out):
                raise ModelSourceError(f"the model returns {type(out).__name__} of {len(out) if hasattr(out, '__len__') else '?'}"
                                       f" item(s); the spec declares {len(self.names)} output(s) {self.names}")
            return dict(zip(self.names, out))

    return NamedOutputsImpl


@functools.cache
def _onnx_source_class():
    import torch

    class OnnxSourceModelImpl(torch.nn.Module):
        """An ONNX file as the reference model: ONNX Runtime (CPU) runs it. Its one buffer is the
        file's sha256, so a build's weights digest follows the file."""

        onnx_source = True

        def __init__(self, path: Path, spec: ModelSpec):
            super().__init__()
            self.path, self.spec = Path(path), spec
            self.register_buffer("source_sha256", torch.tensor(list(bytes.fromhex(sha256_path(self.path))),
                                                               dtype=torch.uint8))
            self._session = None

        def forward(self, x):
            if self._session is None:
                self._session = _ort_session(self.path)
            names = [o.name for o in self.spec.outputs]
            arrays = self._session.run(names, {self.spec.inputs[0].name: x.detach().cpu().numpy().astype(np.float32)})
            return {n: torch.from_numpy(np.asarray(a)) for n, a in zip(names, arrays)}

    return OnnxSourceModelImpl


def NamedOutputs(model, names):    # noqa: N802  (a torch module class, made on first use)
    return _named_outputs_class()(model, names)


def OnnxSourceModel(path, spec):   # noqa: N802
    return _onnx_source_class()(path, spec)


# --------------------------------------------------------------------------- registration

def register(um: UserModel) -> UserModel:
    """Make the model known by its id (replacing an earlier user model of that id). A zoo or
    entry-point id is refused."""
    from .registry import zoo_ids
    if um.spec.id in zoo_ids():
        raise RegistryError(f"model id {um.spec.id!r} is a zoo model; give the spec file another id")
    _USER[um.spec.id] = um
    return um


def lookup(model_id: str) -> UserModel | None:
    """A registered user model, or one found in a build directory given to `use_build_dir`."""
    if model_id in _USER:
        return _USER[model_id]
    for root in reversed(_SEARCH):
        src = root / model_id / SOURCE_DIR
        if (src / SOURCE_JSON).is_file():
            return register(load_source(src))
    return None


def use_build_dir(build_dir: Path | str | None) -> None:
    """Let the registry find user models built into `build_dir` (their `<id>/source/`)."""
    if build_dir is None:
        return
    p = Path(build_dir).resolve()
    if p not in _SEARCH:
        _SEARCH.append(p)


def is_user_model(model_id: str) -> bool:
    return model_id in _USER


def save_source(model_id: str, root: Path) -> Path:
    """Write `<root>/source/`: the spec file, the ONNX file or the factory's name and import root,
    and the samples, so that later commands re-register the model from the build directory alone.
    Unchanged content is left as it is."""
    from runtime.files import atomic_path
    um = _USER[model_id]
    dest = root / SOURCE_DIR
    meta = {"id": model_id, "kind": um.kind, "spec_file": "spec" + um.spec_file.suffix.lower(),
            "spec_sha256": um.spec.sha256(), "factory": um.factory,
            "import_root": str(um.import_root) if um.import_root else None,
            "onnx": SOURCE_ONNX if um.kind == "onnx" else None, "samples": SAMPLES_FILE if um.samples else None}
    current = dest / SOURCE_JSON
    if current.is_file():
        try:
            if json.loads(current.read_text()) == meta:
                return dest
        except ValueError:
            pass
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        shutil.copyfile(um.spec_file, tmp / meta["spec_file"])
        if um.kind == "onnx":
            shutil.copyfile(um.onnx, tmp / SOURCE_ONNX)
        if um.samples:
            np.savez(tmp / SAMPLES_FILE, **{name: a for name, a in um.samples})
        (tmp / SOURCE_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return dest


def load_source(src: Path) -> UserModel:
    """The user model a build directory's `source/` describes."""
    try:
        meta = json.loads((src / SOURCE_JSON).read_text())
    except (OSError, ValueError) as exc:
        raise SpecFileError(f"{src / SOURCE_JSON}: unreadable: {exc}") from None
    root = Path(meta["import_root"]) if meta.get("import_root") else None
    um = load_spec_file(src / meta["spec_file"],
                        onnx=src / meta["onnx"] if meta.get("onnx") else None,
                        torch=meta.get("factory") if meta["kind"] == "torch" else None,
                        samples=src / meta["samples"] if meta.get("samples") else None, import_root=root)
    if um.spec.sha256() != meta.get("spec_sha256"):
        raise SpecFileError(f"{src}: the model there no longer matches its build (spec sha256 "
                            f"{um.spec.sha256()[:12]} ≠ {str(meta.get('spec_sha256'))[:12]}); rebuild it")
    return um
