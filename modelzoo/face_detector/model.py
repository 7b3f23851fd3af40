"""BlazeFace short-range in PyTorch: MediaPipe's `face_detection_short_range.tflite` topology,
with its SSD box decoding inside the network (a constant affine map per anchor), so every
compiled artifact outputs boxes and keypoints in input pixels and scores as probabilities.
Weighted non-max suppression is data-dependent and runs after the network (postprocess.py)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..layers import BlazeBlock, SamePadConv, check_image_input
from ..spec import TensorSpec
from .anchors import SHORT_RANGE, AnchorConfig, anchor_centres

NUM_KEYPOINTS = 6
NUM_COORDS = 4 + 2 * NUM_KEYPOINTS          # box (cx, cy, w, h) + 6 keypoints (x, y)
SCORE_CLIP = 100.0                          # MediaPipe's score_clipping_thresh

# (cin, cout, stride) of the 16 blocks; the 16×16 head taps block 10, the 8×8 head the last.
BLOCKS = ((24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2), (48, 56, 1),
          (56, 64, 1), (64, 72, 1), (72, 80, 1), (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1),
          (96, 96, 1), (96, 96, 1))
TAP_16 = 10


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


class BlazeFace(nn.Module):
    def __init__(self, input_spec: TensorSpec, anchors: AnchorConfig = SHORT_RANGE):
        super().__init__()
        self.input_spec = input_spec
        self.anchors = anchors
        self.stem = SamePadConv(3, 24, 5, 2)
        self.stem_act = nn.ReLU()
        self.backbone = nn.ModuleList(BlazeBlock(ci, co, s, act="relu") for ci, co, s in BLOCKS)
        per_cell = anchors.anchors_per_cell()
        k16, k8 = per_cell[8], per_cell[16]
        self.cls_16 = nn.Conv2d(BLOCKS[TAP_16][1], k16, 1)
        self.cls_8 = nn.Conv2d(BLOCKS[-1][1], k8, 1)
        self.reg_16 = nn.Conv2d(BLOCKS[TAP_16][1], k16 * NUM_COORDS, 1)
        self.reg_8 = nn.Conv2d(BLOCKS[-1][1], k8 * NUM_COORDS, 1)
        for name, m in zip(("box_matrix", "box_offset", "keypoint_matrix", "keypoint_offset"),
                           decode_matrices(anchors)):
            self.register_buffer(name, torch.from_numpy(m), persistent=False)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MediaPipe's raw outputs: regressors (N,A,16) and score logits (N,A,1)."""
        h = self.stem_act(self.stem(x * 2.0 - 1.0))          # the network expects [-1, 1]
        f16 = h
        for i, block in enumerate(self.backbone):
            h = block(h)
            if i == TAP_16:
                f16 = h
        n = x.shape[0]

        def flat(t: torch.Tensor, k: int) -> torch.Tensor:   # NCHW → (N, H·W·anchors, k)
            return t.permute(0, 2, 3, 1).reshape(n, -1, k)

        reg = torch.cat([flat(self.reg_16(f16), NUM_COORDS), flat(self.reg_8(h), NUM_COORDS)], 1)
        cls = torch.cat([flat(self.cls_16(f16), 1), flat(self.cls_8(h), 1)], 1)
        return reg, cls

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, self.input_spec)
        reg, cls = self.raw(x)
        boxes = torch.matmul(reg, self.box_matrix) + self.box_offset
        keypoints = torch.matmul(reg, self.keypoint_matrix) + self.keypoint_offset
        scores = torch.sigmoid(torch.clamp(cls, -SCORE_CLIP, SCORE_CLIP)).reshape(x.shape[0], -1)
        return {"boxes": boxes, "keypoints": keypoints, "scores": scores}
