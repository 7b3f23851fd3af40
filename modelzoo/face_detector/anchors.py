"""SSD anchors of MediaPipe's short- and full-range face detectors (SsdAnchorsCalculator semantics).

Layers that share a stride share a feature map; each layer contributes one anchor per aspect
ratio plus one "interpolated" anchor per cell. With `fixed_anchor_size` every anchor is 1×1
(normalised), so only the centres matter: ((x + 0.5) / fw, (y + 0.5) / fh), cells in row-major
order and anchors of one cell consecutive — the order of the network's outputs. Also the
SSD box decoding as a constant affine map per anchor (NumPy only: no framework here)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorConfig:
    input_size: int = 128
    num_layers: int = 4
    strides: tuple[int, ...] = (8, 16, 16, 16)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    anchor_offset: float = 0.5

    def anchors_per_cell(self) -> dict[int, int]:
        """stride -> anchors per feature-map cell."""
        per_layer = len(self.aspect_ratios) + (1 if self.interpolated_scale_aspect_ratio > 0 else 0)
        out: dict[int, int] = {}
        for s in self.strides[: self.num_layers]:
            out[s] = out.get(s, 0) + per_layer
        return out


SHORT_RANGE = AnchorConfig()
# face_detection_full_range: one layer of stride 4 on the 192 input, one anchor per cell
# (interpolated_scale_aspect_ratio 0): 48×48 = 2304 anchors, the model's (1, 2304, 16) output.
FULL_RANGE = AnchorConfig(input_size=192, num_layers=1, strides=(4,), interpolated_scale_aspect_ratio=0.0)


def anchor_centres(cfg: AnchorConfig = SHORT_RANGE) -> np.ndarray:
    """(A,2) float32 anchor centres (x, y), normalised to [0,1] of the input."""
    out = []
    for stride, per_cell in cfg.anchors_per_cell().items():
        fm = -(-cfg.input_size // stride)
        ys, xs = np.meshgrid(np.arange(fm), np.arange(fm), indexing="ij")
        c = np.stack([(xs + cfg.anchor_offset) / fm, (ys + cfg.anchor_offset) / fm], -1).reshape(-1, 1, 2)
        out.append(np.repeat(c, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


NUM_KEYPOINTS = 6
NUM_COORDS = 4 + 2 * NUM_KEYPOINTS          # box (cx, cy, w, h) + 6 keypoints (x, y)


def num_anchors(cfg: AnchorConfig) -> int:
    return sum((-(-cfg.input_size // s)) ** 2 * k for s, k in cfg.anchors_per_cell().items())


def decode_matrices(cfg: AnchorConfig = SHORT_RANGE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw regressor r (16 per anchor) → boxes [x0,y0,x1,y1] = r·Mb + Ob and keypoints
    [x,y]×6 = r·Mk + Ok, in input pixels. MediaPipe (reverse_output_order, x/y/w/h scale =
    input size, 1×1 anchors): centre = r[0:2] + anchor·size, size = r[2:4], keypoint k =
    r[4+2k : 6+2k] + anchor·size."""
    a = anchor_centres(cfg).astype(np.float64) * cfg.input_size          # (A,2) pixels
    mb = np.zeros((NUM_COORDS, 4))
    mb[0, [0, 2]] = 1.0
    mb[1, [1, 3]] = 1.0
    mb[2, 0], mb[2, 2] = -0.5, 0.5
    mb[3, 1], mb[3, 3] = -0.5, 0.5
    ob = np.concatenate([a, a], axis=1)
    mk = np.zeros((NUM_COORDS, 2 * NUM_KEYPOINTS))
    mk[4:, :] = np.eye(2 * NUM_KEYPOINTS)
    ok = np.tile(a, (1, NUM_KEYPOINTS))
    return tuple(m.astype(np.float32) for m in (mb, ob, mk, ok))
