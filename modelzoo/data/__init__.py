"""Small data shipped with the zoo: two real face crops (192×192 RGB, from public portraits: the
Grace Hopper photo shipped with matplotlib and scikit-image's astronaut) used as example inputs
of landmark models (the converters' quick parity gates) and to calibrate int8 quantisation, and
one whole photo (the public-domain Grace Hopper portrait, 512×600 JPEG) for the photo pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent
SAMPLE_FACE = DATA / "sample_face.png"
SAMPLE_FACES = (SAMPLE_FACE, DATA / "sample_face_2.png")
SAMPLE_PHOTO = DATA / "sample_photo.jpg"


def _load(path: Path):
    from PIL import Image
    with Image.open(path) as im:
        return im.convert("RGB")


def sample_face(size: int) -> np.ndarray:
    """The sample face as float32 NCHW (1,3,size,size) in [0,1]."""
    from PIL import Image
    im = _load(SAMPLE_FACE)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def face_calibration_set(size: int, count: int = 20, seed: int = 0) -> np.ndarray:
    """`count` augmented real face crops, float32 NHWC (count,size,size,3) in [0,1]: rotation
    ±25°, scale 0.85–1.15, shift ±8%, mirror, brightness and contrast jitter — the spread of
    crops a landmark model sees behind a detector or tracker."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    faces = [_load(p) for p in SAMPLE_FACES]
    out = np.empty((count, size, size, 3), np.float32)
    for i in range(count):
        im = faces[i % len(faces)]
        w, h = im.size
        angle = np.radians(rng.uniform(-25, 25))
        k = (w / size) / rng.uniform(0.85, 1.15)            # source pixels per output pixel
        cx, cy = np.array([w / 2, h / 2]) + rng.uniform(-0.08, 0.08, 2) * (w, h)
        ca, sa = np.cos(angle) * k, np.sin(angle) * k
        # output (u,v) → source: centre + R(angle)·k·((u,v) − size/2)
        coeffs = (ca, -sa, cx - ca * size / 2 + sa * size / 2, sa, ca, cy - sa * size / 2 - ca * size / 2)
        im = im.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(im, dtype=np.float32) / 255.0
        arr = (arr - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.uniform(-0.15, 0.15)
        out[i] = np.clip(arr, 0.0, 1.0)
    return out
