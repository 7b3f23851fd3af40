"""Image → model input tensor through a ROI: OpenCV's perspective warp, bilinear, as
MediaPipe's ImageToTensorCalculator does on the CPU (8-bit warp, then scaled to float)."""
from __future__ import annotations

import numpy as np

from .roi import Roi

BORDER_ZERO = "zero"
BORDER_REPLICATE = "replicate"


def warp_matrix(roi: Roi, size: tuple[int, int]) -> np.ndarray:
    """3×3 matrix mapping image pixels to tensor pixels (what OpenCV gets from the ROI's
    corner points, as float32, like MediaPipe)."""
    import cv2

    src = cv2.boxPoints(((roi.cx, roi.cy), (roi.width, roi.height), float(np.degrees(roi.rotation))))
    w, h = size
    dst = np.array([[0, h], [0, 0], [w, 0], [w, h]], np.float32)
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst)


def crop_tensor(image: np.ndarray, roi: Roi, size: tuple[int, int], border: str = BORDER_REPLICATE,
                value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(1,3,H,W) float32 tensor of the ROI of an (h,w,3) uint8 RGB image."""
    import cv2

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    mode = {BORDER_ZERO: cv2.BORDER_CONSTANT, BORDER_REPLICATE: cv2.BORDER_REPLICATE}[border]
    out = cv2.warpPerspective(image, warp_matrix(roi, size), size, flags=cv2.INTER_LINEAR, borderMode=mode,
                              borderValue=0)
    lo, hi = value_range
    t = out.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    return np.ascontiguousarray(t.transpose(2, 0, 1)[None])
