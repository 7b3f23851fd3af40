"""SSD anchors of MediaPipe's short- and full-range face detectors (SsdAnchorsCalculator semantics).

Layers that share a stride share a feature map; each layer contributes one anchor per aspect
ratio plus one "interpolated" anchor per cell. With `fixed_anchor_size` every anchor is 1×1
(normalised), so only the centres matter: ((x + 0.5) / fw, (y + 0.5) / fh), cells in row-major
order and anchors of one cell consecutive — the order of the network's outputs."""
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
