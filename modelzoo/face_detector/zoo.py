"""Registers the face detectors with the zoo; torch and the models load only when one is built."""
from __future__ import annotations

from pathlib import Path

from ..registry import register_model
from .spec import spec, spec_full


def _load_short(model, cache_dir: Path | None = None) -> None:
    from .weights import load_pretrained
    load_pretrained(model, cache_dir)


def _load_full(model, cache_dir: Path | None = None) -> None:
    from .weights_full import load_pretrained
    load_pretrained(model, cache_dir)


@register_model("face_detector", spec=spec, load_weights=_load_short)
def build():
    from .model import BlazeFace
    return BlazeFace(spec().input("image"))


@register_model("face_detector_full", spec=spec_full, load_weights=_load_full)
def build_full():
    from .full_range import BlazeFaceFullRange
    return BlazeFaceFullRange(spec_full().input("image"))
