"""BlazeFace full-range in PyTorch: the topology of MediaPipe's
`face_detection_full_range_sparse.tflite` (read op by op from the densified file), with the same
in-network box decoding as the short-range model (model.py).

192×192 input in [-1,1]; a 3×3 stride-2 stem (32 channels, 96×96), then stages at 96, 48, 24,
12 and 6 px of *bottleneck* blocks — depthwise 3×3 → 1×1 to a narrow width (ReLU) → depthwise
3×3 → 1×1 back (+ input) → ReLU; a stage's first block has stride 2 and no residual (ReLU after
its last 1×1). Every 3×3 pads one pixel on each side (an explicit PAD in the file, symmetric
even at stride 2). A top-down path goes back up to 48 px: 1×1 (ReLU) → bilinear ×2
(half-pixel centres, written as gathers) → + the stage's 1×1 lateral (ReLU) → bottleneck
blocks. The heads run on the 48×48 map: 1×1 → depthwise 3×3 stride 2 → depth-to-space ×2
(written as a constant row gather), one anchor per 48×48 cell.

The file's RESIZE_BILINEAR and DEPTH_TO_SPACE are written with 1-D constant gathers so the
model lowers to ops that both the TFLite GPU delegate and the Core ML reference evaluator run."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import TensorSpec
from .anchors import FULL_RANGE, NUM_COORDS, AnchorConfig
from .model import DecodedDetector, flat_head

STEM = 32
# Bottom-up stages: (cout, narrow width, residual blocks after the first); the 96-px stage is
# the stem's, without a stride-2 block.
STAGES = ((32, 8, 2), (64, 16, 2), (128, 32, 2), (192, 48, 2), (384, 96, 3))
# Top-down: (width, narrow width, residual blocks) at 12, 24 and 48 px; each level's lateral
# is a 1×1 from the bottom-up stage of that size.
TOP_DOWN = ((96, 48, 2), (64, 32, 2), (48, 24, 1))
UPSCALE = 2          # DEPTH_TO_SPACE block size of the heads


def _dw(channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, padding=1, groups=channels)


class Bottleneck(nn.Module):
    """dw 3×3 (stride s) → 1×1 cin→mid, ReLU → dw 3×3 → 1×1 mid→cout → (+ x when stride 1) → ReLU."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1):
        super().__init__()
        if stride == 1 and cin != cout:
            raise ValueError(f"a residual bottleneck keeps its width ({cin}→{cout})")
        self.stride = stride
        self.dw1, self.pw1 = _dw(cin, stride), nn.Conv2d(cin, mid, 1)
        self.dw2, self.pw2 = _dw(mid), nn.Conv2d(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pw2(self.dw2(F.relu(self.pw1(self.dw1(x)))))
        return F.relu(h + x if self.stride == 1 else h)


def _stage(cin: int, cout: int, mid: int, blocks: int, downsample: bool) -> nn.Sequential:
    first = [Bottleneck(cin, mid, cout, 2)] if downsample else []
    return nn.Sequential(*first, *(Bottleneck(cout, mid, cout) for _ in range(blocks)))


def depth_to_space_order(h: int, w: int, k: int, block: int = UPSCALE) -> list[int]:
    """Row order that turns the rows of an (h·w·b², k) NHWC-flattened map — cell (y, x), sub-pixel
    q = i·b + j — into the rows of TFLite's DEPTH_TO_SPACE output flattened: pixel (b·y + i, b·x + j)
    reads channels q·k … q·k + k−1 of cell (y, x)."""
    order = []
    for row in range(h * block):
        for col in range(w * block):
            y, i, x, j = row // block, row % block, col // block, col % block
            order.append((y * w + x) * block * block + i * block + j)
    return order


class Head(nn.Module):
    """1×1 → depthwise 3×3 stride 2 → depth-to-space ×2: `k` values per cell of the input map.

    The depth-to-space is a flatten and one GATHER of rows by constant 1-D indices (exact, and
    it runs on the GPU delegate and in every evaluator; `pixel_shuffle` reads the channels in
    another order and lowers to 6-D transposes)."""

    def __init__(self, cin: int, k: int, size: int):
        super().__init__()
        self.k = k
        self.pw = nn.Conv2d(cin, k * UPSCALE * UPSCALE, 1)
        self.dw = _dw(k * UPSCALE * UPSCALE, 2)
        half = size // UPSCALE
        order = depth_to_space_order(half, half, k)
        self.register_buffer("order", torch.tensor(order, dtype=torch.int32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return flat_head(self.dw(self.pw(x)), self.k).index_select(1, self.order)


def _upsample_indices(n: int) -> tuple[list[int], list[int]]:
    """Bilinear ×2 with half-pixel centres along one axis: out[2i] = ¾·x[i] + ¼·x[i−1],
    out[2i+1] = ¾·x[i] + ¼·x[i+1], neighbours clamped to the border. (near, far) indices."""
    near = [o // 2 for o in range(2 * n)]
    far = [max(o // 2 - 1, 0) if o % 2 == 0 else min(o // 2 + 1, n - 1) for o in range(2 * n)]
    return near, far


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """TFLite RESIZE_BILINEAR ×2 (half_pixel_centers) as constant 1-D GATHERs and weighted sums,
    rows then columns: ops the GPU delegate runs and every evaluator has."""
    for axis in (2, 3):
        near, far = (torch.tensor(i, dtype=torch.int32, device=x.device) for i in _upsample_indices(int(x.shape[axis])))
        x = x.index_select(axis, near) * 0.75 + x.index_select(axis, far) * 0.25
    return x


class BlazeFaceFullRange(DecodedDetector):
    def __init__(self, input_spec: TensorSpec, anchors: AnchorConfig = FULL_RANGE):
        super().__init__(input_spec, anchors)
        if anchors.anchors_per_cell() != {4: 1}:
            raise ValueError("the full-range topology has one anchor per cell of a stride-4 map")
        self.stem = nn.Conv2d(3, STEM, 3, 2, padding=1)
        stages, cin = [], STEM
        for i, (cout, mid, blocks) in enumerate(STAGES):
            stages.append(_stage(cin, cout, mid, blocks, downsample=i > 0))
            cin = cout
        self.stages = nn.ModuleList(stages)
        # Laterals from the 48, 24 and 12-px stages; top-down 1×1s from 6, 12 and 24 px.
        widths = [w for w, _, _ in TOP_DOWN]
        self.laterals = nn.ModuleList(nn.Conv2d(STAGES[3 - i][0], w, 1) for i, w in enumerate(widths))
        sources = [STAGES[-1][0]] + widths[:-1]
        self.reduce = nn.ModuleList(nn.Conv2d(s, w, 1) for s, w in zip(sources, widths))
        self.top_down = nn.ModuleList(_stage(w, w, mid, blocks, downsample=False) for w, mid, blocks in TOP_DOWN)
        fm = anchors.input_size // anchors.strides[0]
        self.cls = Head(widths[-1], 1, fm)
        self.reg = Head(widths[-1], NUM_COORDS, fm)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MediaPipe's raw outputs: regressors (N,2304,16) and score logits (N,2304,1)."""
        h = F.relu(self.stem(x * 2.0 - 1.0))             # the network expects [-1, 1]
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        for i, (lateral, reduce, blocks) in enumerate(zip(self.laterals, self.reduce, self.top_down)):
            lat = F.relu(lateral(feats[3 - i]))
            h = blocks(upsample2(F.relu(reduce(h))) + lat)
        return self.reg(h), self.cls(h)
