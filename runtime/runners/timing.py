"""Runners that exist for latency: ONNX Runtime on CUDA (NVIDIA hosts, optional extra) and Core ML
`predict` per compute unit (macOS). Registered in the common runner registry on import."""
from __future__ import annotations

import subprocess

from .base import Availability, RunnerError, RunnerUnavailable, register_runner
from .builtin import CoreMLRunner, OnnxRuntimeRunner


@register_runner
class OnnxRuntimeCudaRunner(OnnxRuntimeRunner):
    """ONNX Runtime with the CUDA execution provider (pip extra: onnxruntime-gpu). Refuses to run
    rather than silently falling back to the CPU provider."""

    name = "onnxruntime-cuda"
    format = "onnx"
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider")

    @classmethod
    def is_available(cls) -> Availability:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return Availability(False, f"onnxruntime is not importable ({exc})")
        providers = ort.get_available_providers()
        if "CUDAExecutionProvider" not in providers:
            return Availability(False, "this onnxruntime build has no CUDAExecutionProvider (providers: "
                                       f"{', '.join(providers)}); install onnxruntime-gpu on an NVIDIA host")
        return Availability(True)

    def _load_impl(self) -> None:
        try:
            super()._load_impl()
        except RunnerError:
            raise
        except Exception as exc:
            raise RunnerUnavailable(f"{self.name}: CUDA session failed: {type(exc).__name__}: {exc}") from exc
        if self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise RunnerUnavailable(f"{self.name}: onnxruntime fell back to {self.session.get_providers()} "
                                    "(no usable CUDA device or CUDA/cuDNN libraries)")

    @staticmethod
    def device() -> str:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10).stdout.strip().splitlines()
            if out:
                return f"NVIDIA {out[0]}" if not out[0].startswith("NVIDIA") else out[0]
        except (OSError, subprocess.SubprocessError):
            pass
        return "NVIDIA GPU"


class _CoreMLUnits(CoreMLRunner):
    compute_units: str = "ALL"

    def _load_impl(self) -> None:
        import coremltools as ct
        self.model = ct.models.MLModel(str(self.artifact), compute_units=getattr(ct.ComputeUnit, self.compute_units))


@register_runner
class CoreMLCPURunner(_CoreMLUnits):
    """Core ML predict restricted to the CPU."""
    name = "coreml-cpu"
    compute_units = "CPU_ONLY"


@register_runner
class CoreMLCPUGPURunner(_CoreMLUnits):
    """Core ML predict on CPU and GPU (no Neural Engine)."""
    name = "coreml-cpu-gpu"
    compute_units = "CPU_AND_GPU"


@register_runner
class CoreMLAllRunner(_CoreMLUnits):
    """Core ML predict on every compute unit (CPU, GPU, Neural Engine)."""
    name = "coreml-all"
    compute_units = "ALL"
