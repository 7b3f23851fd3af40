"""The built-in runners: ONNX Runtime (CPU), TFLite (XNNPACK, reference kernels, and LiteRT's GPU
accelerator in fp16 and fp32), Core ML (macOS only) and the MIL reference evaluator (any OS).
The PyTorch reference runner lives with the zoo (`modelzoo.runner`), which owns the models."""
from __future__ import annotations

import platform
import numpy as np

from .base import Availability, Runner, RunnerError, register_runner


@register_runner
class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    format = "onnx"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def _load_impl(self) -> None:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        model = self.artifact if isinstance(self.artifact, bytes) else str(self.artifact)
        self.session = ort.InferenceSession(model, opts, providers=list(self.providers))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._check_native_inputs()

    def _native_inputs(self):
        return {i.name: tuple(i.shape) for i in self.session.get_inputs()}

    def _infer_impl(self, feed):
        return dict(zip(self.output_names, self.session.run(None, feed)))


@register_runner
class TFLiteRunner(Runner):
    """TFLite through ai_edge_litert with the default XNNPACK delegate. `preserve_all_tensors`
    keeps every intermediate readable after a run (`tensors`), for localisation; `by_signature`
    feeds and reads the model's (first) signature by its names (None: when it has one) (as LiteRT's CompiledModel does)."""

    name = "tflite"
    format = "tflite"
    resolver = "AUTO"

    def __init__(self, spec, artifact=None, *, preserve_all_tensors: bool = False, by_signature: bool | None = False,
                 **kw):
        super().__init__(spec, artifact, **kw)
        self.preserve_all_tensors = preserve_all_tensors
        self.by_signature = by_signature
        self.signature = None

    def _load_impl(self) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        where = ({"model_content": self.artifact} if isinstance(self.artifact, bytes)
                 else {"model_path": str(self.artifact)})
        self.interpreter = Interpreter(**where, num_threads=self.threads or 1,
                                       experimental_op_resolver_type=getattr(OpResolverType, self.resolver),
                                       experimental_preserve_all_tensors=self.preserve_all_tensors)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        keys = list(self.interpreter.get_signature_list())
        if self.by_signature is None:              # "auto": the signature where the model has one
            self.by_signature = bool(keys)
        if self.by_signature:
            if not keys:
                raise RunnerError(f"{self.name}: the model has no signature")
            self.signature = self.interpreter.get_signature_runner(keys[0])
        self._check_native_inputs()

    def _native_inputs(self):
        return {n: shape for n, (shape, _) in self.input_details().items()}

    def input_details(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Input name → (shape, dtype) as the model declares them (after `load`)."""
        details = (self.signature.get_input_details() if self.signature is not None
                   else {d["name"]: d for d in self.inputs})
        return {n: (tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"])) for n, d in details.items()}

    def _infer_impl(self, feed):
        if self.signature is not None:
            return self.signature(**feed)
        it = self.interpreter
        for d in self.inputs:
            x = feed[d["name"]]
            if tuple(d["shape"]) != x.shape:
                raise RunnerError(f"{self.name}: input {d['name']} expects {tuple(d['shape'])}, got {x.shape} "
                                  f"(declared layout {self.input_layout})")
            it.set_tensor(d["index"], x)
        it.invoke()
        return {d["name"]: it.get_tensor(d["index"]) for d in self.outputs}

    def time_invoke(self, feed: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        """Set native `feed` once, then time `runs` bare invocations (ms) after `warmup` untimed
        ones: the runtime's own cost, no input or output copies (the op profiler's unit)."""
        import time
        if not self._loaded:
            self.load()
        for d in self.inputs:
            self.interpreter.set_tensor(d["index"], feed[d["name"]])
        for _ in range(warmup):
            self.interpreter.invoke()
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.interpreter.invoke()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    def tensors(self) -> list[tuple[int, str, np.ndarray]]:
        """(index, name, value) of every tensor with data after the last run (needs
        `preserve_all_tensors` for intermediates)."""
        values = []
        for d in self.interpreter.get_tensor_details():
            try:
                values.append((d["index"], d["name"], np.array(self.interpreter.get_tensor(d["index"]))))
            except ValueError:          # tensors without data (scratch, empty optional inputs)
                pass
        return values


@register_runner
class TFLiteReferenceRunner(TFLiteRunner):
    """TFLite's reference kernels, no delegate (the plain-kernel baseline)."""

    name = "tflite-ref"
    resolver = "BUILTIN_REF"


@register_runner
class TFLiteGpuRunner(Runner):
    """TFLite on LiteRT's GPU accelerator alone (no CPU fallback), computing in fp16 as the
    accelerator does by default. Needs a Vulkan adapter (lavapipe on a machine without a GPU)."""

    name = "tflite-gpu"
    format = "tflite"
    compute = "fp16"
    on_gpu = True
    enforce_f32 = False

    @classmethod
    def is_available(cls) -> Availability:
        from runtime.litert_gpu import availability
        device, why = availability()
        return Availability(device is not None, why)

    def _load_impl(self) -> None:
        from runtime.litert_gpu import GpuCompileError, GpuModel
        try:
            self.model = GpuModel(self.artifact, enforce_f32=self.enforce_f32)
        except GpuCompileError as exc:
            raise RunnerError(f"{self.name}: {exc}") from exc
        self._check_native_inputs()

    def _native_inputs(self):
        return {n: () for n in self.model.input_names}

    def _infer_impl(self, feed):
        return self.model.run(feed)

    def _close_impl(self) -> None:
        self.model.close()


@register_runner
class TFLiteGpuF32Runner(TFLiteGpuRunner):
    """The GPU accelerator with `enforce_f32`: fp32 arithmetic, the bound of the artifact's precision."""

    name = "tflite-gpu-f32"
    compute = None
    enforce_f32 = True


@register_runner
class CoreMLRunner(Runner):
    """Core ML's own predict (macOS only)."""

    name = "coreml"
    format = "coreml"

    @classmethod
    def is_available(cls) -> Availability:
        if platform.system() != "Darwin":
            return Availability(False, f"Core ML predict runs only on macOS (this is {platform.system()}); "
                                       f"use the 'mil' reference runner")
        return Availability(True)

    def _load_impl(self) -> None:
        import coremltools as ct
        self.model = ct.models.MLModel(str(self.artifact))

    def _infer_impl(self, feed):
        return {k: np.asarray(v) for k, v in self.model.predict(feed).items()}


@register_runner
class MILReferenceRunner(Runner):
    """Core ML programs evaluated by Meshport's NumPy MIL reference evaluator (any OS)."""

    name = "mil"
    format = "coreml"

    def _load_impl(self) -> None:
        from runtime.mil import MILProgram
        self.program = MILProgram(self.artifact)

    def _infer_impl(self, feed):
        return self.program.run(feed)


DEFAULT_RUNNERS = {"pytorch": ("pytorch",), "onnx": ("onnxruntime",),
                   "tflite": ("tflite", "tflite-ref", "tflite-gpu-f32", "tflite-gpu"), "coreml": ("coreml", "mil")}
