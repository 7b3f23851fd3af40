"""Conversion steps (torch→onnx, …) and the build that chains them. Imports no heavy framework
at import time: each step imports its toolchain when it runs."""
from .base import Artifact, ConversionError, IOSpec, get_step, list_steps, register_step, tool_versions
from . import coreml, onnx_tflite, torch_onnx  # noqa: F401  (register the steps)

__all__ = ["Artifact", "ConversionError", "IOSpec", "get_step", "list_steps", "register_step", "tool_versions"]
