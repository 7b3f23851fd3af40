"""Regions of interest as MediaPipe computes them, in image pixels.

A `Roi` is a rotated rectangle (centre, size, rotation; MediaPipe's NormalizedRect scaled to
pixels). Its crop tensor maps output pixel (u, v) of a W×H tensor to the image point
centre + R(rotation)·((u/W − ½)·width, (v/H − ½)·height) — corners to corners, pixel
centres at integer coordinates (ImageToTensorCalculator's OpenCV path); landmarks go back
through the same map (LandmarkProjectionCalculator), z scaled like x."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# FaceDetectionFrontDetectionToRoi / FaceLandmarkLandmarksToRoi: 1.5× the box, square on its
# long side; rotation from the detector's eye keypoints (0 → 1) or mesh eye corners (33 → 263).
ROI_SCALE = 1.5
DETECTION_ROTATION_KEYPOINTS = (0, 1)
LANDMARK_ROTATION_POINTS = (33, 263)


@dataclass(frozen=True)
class Roi:
    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0      # radians; positive turns the crop clockwise on screen (y down)

    def to_image(self, points: np.ndarray, tensor_size: tuple[int, int]) -> np.ndarray:
        """(K,2|3) tensor-pixel points → image pixels; a third column (z) is scaled like x."""
        p = np.asarray(points, np.float64)
        tw, th = tensor_size
        x = (p[:, 0] / tw - 0.5) * self.width
        y = (p[:, 1] / th - 0.5) * self.height
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        out = np.stack([c * x - s * y + self.cx, s * x + c * y + self.cy], axis=1)
        if p.shape[1] > 2:
            out = np.concatenate([out, p[:, 2:] / tw * self.width], axis=1)
        return out

    def corners(self) -> np.ndarray:
        """(4,2) image points of the tensor's corners: top-left, top-right, bottom-right, bottom-left."""
        return self.to_image(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64), (1, 1))

    def to_json(self) -> dict:
        return {"center": [round(self.cx, 3), round(self.cy, 3)], "size": [round(self.width, 3),
                round(self.height, 3)], "rotation": round(self.rotation, 6)}


def normalize_radians(angle: float) -> float:
    """Angle in [−π, π)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def _rotation(p0: np.ndarray, p1: np.ndarray, target: float = 0.0) -> float:
    return normalize_radians(target - math.atan2(-(p1[1] - p0[1]), p1[0] - p0[0]))


def _square_roi(box: np.ndarray, rotation: float, scale: float = ROI_SCALE) -> Roi:
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * scale
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, side, side, rotation)


def letterbox_roi(image_size: tuple[int, int]) -> Roi:
    """The whole image padded to a square around its centre (keep_aspect_ratio, zero border)."""
    w, h = image_size
    side = float(max(w, h))
    return Roi(w / 2, h / 2, side, side, 0.0)


def detection_roi(box: np.ndarray, keypoints: np.ndarray) -> Roi:
    """The landmark model's crop for a detection (image pixels)."""
    i, j = DETECTION_ROTATION_KEYPOINTS
    return _square_roi(box, _rotation(keypoints[i], keypoints[j]))


def landmarks_roi(landmarks: np.ndarray) -> Roi:
    """The next frame's crop from this frame's landmarks (tracking)."""
    xy = np.asarray(landmarks, np.float64)[:, :2]
    box = np.concatenate([xy.min(0), xy.max(0)])
    i, j = LANDMARK_ROTATION_POINTS
    return _square_roi(box, _rotation(xy[i], xy[j]))


def axis_aligned_iou(a: Roi, b: Roi) -> float:
    """IoU of two ROIs ignoring rotation (MediaPipe's AssociationNormRectCalculator)."""
    ax0, ay0, ax1, ay1 = a.cx - a.width / 2, a.cy - a.height / 2, a.cx + a.width / 2, a.cy + a.height / 2
    bx0, by0, bx1, by1 = b.cx - b.width / 2, b.cy - b.height / 2, b.cx + b.width / 2, b.cy + b.height / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0
