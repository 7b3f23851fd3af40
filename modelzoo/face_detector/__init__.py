"""The zoo's face detectors: MediaPipe's BlazeFace short range (`face_detector`) and full range
(`face_detector_full`), with imported weights.

Importing this package, its anchors, postprocess or spec imports no torch (a runtime for built
artifacts decodes and suppresses detections with them); the PyTorch models load on first use
of BlazeFace / BlazeFaceFullRange and are registered with the zoo by `.zoo`."""
from __future__ import annotations

from .anchors import FULL_RANGE, SHORT_RANGE, AnchorConfig, anchor_centres
from .postprocess import Detection, detect, weighted_nms

_LAZY = {"BlazeFace": ".model", "BlazeFaceFullRange": ".full_range"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AnchorConfig", "BlazeFace", "BlazeFaceFullRange", "Detection", "FULL_RANGE", "SHORT_RANGE",
           "anchor_centres", "detect", "weighted_nms"]
