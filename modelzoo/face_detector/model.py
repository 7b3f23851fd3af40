"""BlazeFace short-range in PyTorch: MediaPipe's `face_detection_short_range.tflite` topology,
with its SSD box decoding inside the network (a constant affine map per anchor), so every
compiled artifact outputs boxes and keypoints in input pixels and scores as probabilities.
Weighted non-max suppression is data-dependent and runs after the network (postprocess.py)."""
from __future__ import annotations

import torch
from torch import nn

from ..layers import BlazeBlock, SamePadConv, check_image_input
from ..spec import TensorSpec
from .anchors import NUM_COORDS, SHORT_RANGE, AnchorConfig, decode_matrices

SCORE_CLIP = 100.0                          # MediaPipe's score_clipping_thresh

# (cin, cout, stride) of the 16 blocks; the 16×16 head taps block 10, the 8×8 head the last.
BLOCKS = ((24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2), (48, 56, 1),
          (56, 64, 1), (64, 72, 1), (72, 80, 1), (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1),
          (96, 96, 1), (96, 96, 1))
TAP_16 = 10


class DecodedDetector(nn.Module):
    """A detector network whose `raw` gives MediaPipe's regressors (N,A,16) and score logits
    (N,A,1) (each subclass defines it); `forward` decodes them with the anchors' constant affine maps into boxes and
    keypoints in input pixels and scores as probabilities (the zoo detectors' output contract)."""

    def __init__(self, input_spec: TensorSpec, anchors: AnchorConfig):
        super().__init__()
        self.input_spec = input_spec
        self.anchors = anchors
        for name, m in zip(("box_matrix", "box_offset", "keypoint_matrix", "keypoint_offset"),
                           decode_matrices(anchors)):
            self.register_buffer(name, torch.from_numpy(m), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, self.input_spec)
        reg, cls = self.raw(x)
        boxes = torch.matmul(reg, self.box_matrix) + self.box_offset
        keypoints = torch.matmul(reg, self.keypoint_matrix) + self.keypoint_offset
        scores = torch.sigmoid(torch.clamp(cls, -SCORE_CLIP, SCORE_CLIP)).reshape(x.shape[0], -1)
        return {"boxes": boxes, "keypoints": keypoints, "scores": scores}


def flat_head(t: torch.Tensor, k: int) -> torch.Tensor:
    """NCHW head output → (N, H·W·anchors, k): cells row-major, a cell's anchors consecutive."""
    return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, k)


class BlazeFace(DecodedDetector):
    def __init__(self, input_spec: TensorSpec, anchors: AnchorConfig = SHORT_RANGE):
        super().__init__(input_spec, anchors)
        self.stem = SamePadConv(3, 24, 5, 2)
        self.stem_act = nn.ReLU()
        self.backbone = nn.ModuleList(BlazeBlock(ci, co, s, act="relu") for ci, co, s in BLOCKS)
        per_cell = anchors.anchors_per_cell()
        k16, k8 = per_cell[8], per_cell[16]
        self.cls_16 = nn.Conv2d(BLOCKS[TAP_16][1], k16, 1)
        self.cls_8 = nn.Conv2d(BLOCKS[-1][1], k8, 1)
        self.reg_16 = nn.Conv2d(BLOCKS[TAP_16][1], k16 * NUM_COORDS, 1)
        self.reg_8 = nn.Conv2d(BLOCKS[-1][1], k8 * NUM_COORDS, 1)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MediaPipe's raw outputs: regressors (N,A,16) and score logits (N,A,1)."""
        h = self.stem_act(self.stem(x * 2.0 - 1.0))          # the network expects [-1, 1]
        f16 = h
        for i, block in enumerate(self.backbone):
            h = block(h)
            if i == TAP_16:
                f16 = h
        reg = torch.cat([flat_head(self.reg_16(f16), NUM_COORDS), flat_head(self.reg_8(h), NUM_COORDS)], 1)
        cls = torch.cat([flat_head(self.cls_16(f16), 1), flat_head(self.cls_8(h), 1)], 1)
        return reg, cls
