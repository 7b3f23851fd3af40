"""Meshport: compile face-mesh models from PyTorch to ONNX, TFLite and Core ML, check parity,
measure latency and publish versioned artifacts. This package is the thin CLI layer."""
__version__ = "0.1.0"
