"""The runners: PyTorch, ONNX Runtime (CPU), TFLite (XNNPACK, reference kernels, and LiteRT's GPU
accelerator in fp16 and fp32), Core ML (macOS only) and the MIL reference evaluator (any OS)."""
from __future__ import annotations

import platform
from typing import Any

import numpy as np

import modelzoo

from .base import Availability, Runner, RunnerError, register_runner


@register_runner
class TorchRunner(Runner):
    """The reference: the zoo model itself (imported weights when it has them)."""

    name = "pytorch"
    format = "pytorch"

    def __init__(self, spec, artifact=None, *, model: Any = None, **kw):
        super().__init__(spec, None, **kw)
        self.model = model

    def _load_impl(self) -> None:
        import torch
        if self.model is None:
            self.model = modelzoo.load_model(self.spec.id, pretrained=modelzoo.has_pretrained(self.spec.id))
        if self.threads:
            torch.set_num_threads(self.threads)

    def _infer_impl(self, feed):
        import torch
        (name,) = feed
        with torch.no_grad():
            out = self.model(torch.from_numpy(feed[name]))
        return {k: v.numpy() for k, v in out.items()}


@register_runner
class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    format = "onnx"

    def _load_impl(self) -> None:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.artifact), opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        names = {i.name for i in self.session.get_inputs()}
        want = {t.name for t in self.spec.inputs}
        if names != want:
            raise RunnerError(f"{self.name}: {self.artifact.name} has inputs {sorted(names)}, spec {sorted(want)}")

    def _infer_impl(self, feed):
        return dict(zip(self.output_names, self.session.run(None, feed)))


@register_runner
class TFLiteRunner(Runner):
    """TFLite through ai_edge_litert with the default XNNPACK delegate."""

    name = "tflite"
    format = "tflite"
    resolver = "AUTO"

    def _load_impl(self) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        kind = getattr(OpResolverType, self.resolver)
        self.interpreter = Interpreter(model_path=str(self.artifact), num_threads=self.threads or 1,
                                       experimental_op_resolver_type=kind)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        names = {d["name"] for d in self.inputs}
        want = {t.name for t in self.spec.inputs}
        if names != want:
            raise RunnerError(f"{self.name}: {self.artifact.name} has inputs {sorted(names)}, spec {sorted(want)}")

    def _infer_impl(self, feed):
        it = self.interpreter
        for d in self.inputs:
            x = feed[d["name"]]
            if tuple(d["shape"]) != x.shape:
                raise RunnerError(f"{self.name}: input {d['name']} expects {tuple(d['shape'])}, got {x.shape} "
                                  f"(declared layout {self.input_layout})")
            it.set_tensor(d["index"], x)
        it.invoke()
        return {d["name"]: it.get_tensor(d["index"]) for d in self.outputs}


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
        from converters.litert_gpu import availability
        device, why = availability()
        return Availability(device is not None, why)

    def _load_impl(self) -> None:
        from converters.litert_gpu import GpuCompileError, GpuModel
        try:
            self.model = GpuModel(self.artifact, enforce_f32=self.enforce_f32)
        except GpuCompileError as exc:
            raise RunnerError(f"{self.name}: {exc}") from exc
        want = {t.name for t in self.spec.inputs}
        if set(self.model.input_names) != want:
            raise RunnerError(f"{self.name}: {self.artifact.name} has inputs {sorted(self.model.input_names)}, "
                              f"spec {sorted(want)}")

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
        from converters.mil_eval import MILProgram
        self.program = MILProgram(self.artifact)

    def _infer_impl(self, feed):
        return self.program.run(feed)


DEFAULT_RUNNERS = {"pytorch": ("pytorch",), "onnx": ("onnxruntime",),
                   "tflite": ("tflite", "tflite-ref", "tflite-gpu-f32", "tflite-gpu"), "coreml": ("coreml", "mil")}
