"""Models nobody here wrote, in the form their public sources give them, for the "your own
models" end-to-end tests. Every factory initialises its weights from a fixed seed: the weights
are random (no trained checkpoint is used), so the tests exercise the arithmetic, not accuracy.

- `stn_classifier`: the spatial transformer network of the PyTorch tutorial
  (pytorch/tutorials, intermediate_source/spatial_transformer_tutorial.py, "Net"): a localisation
  net → affine_grid → grid_sample → the MNIST classifier → log_softmax, on 1×1×28×28.
- `flow_warp`: an optical-flow backward warp as RAFT's `bilinear_sampler` (princeton-vl/RAFT,
  core/utils/utils.py) does it: convolutions predict a flow field in pixels, the sampling points
  are the pixel grid plus the flow, normalised with 2·x/(W−1) − 1 and sampled with
  grid_sample(align_corners=True, zeros padding).
- `deform_sampler`: a deformable-convolution-v1 sampler (Dai et al. 2017): a 3×3 conv predicts a
  (dy, dx) offset per kernel tap, the features are sampled bilinearly (zeros outside) at every
  tap p + p_k + Δp_k, and a 1×1 conv over the C·9 sampled channels combines them (the
  deformable conv's weighted sum over taps).
- `grid_sample_combos`: one GridSample for each of the 12 mode × padding × align_corners
  combinations, on one grid computed at run time, 1.3·tanh(conv(x)), reaching out of range."""
from __future__ import annotations

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 20240611

COMBOS = list(itertools.product(("bilinear", "nearest"), ("zeros", "border", "reflection"), (False, True)))


def combo_name(mode: str, pad: str, align: bool) -> str:
    return f"{mode}_{pad}_ac{int(align)}"


class STNClassifier(nn.Module):
    """The tutorial's `Net`, layer for layer (dropout is inactive in eval mode)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        self.localization = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=7), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5), nn.MaxPool2d(2, stride=2), nn.ReLU(True))
        self.fc_loc = nn.Sequential(nn.Linear(10 * 3 * 3, 32), nn.ReLU(True), nn.Linear(32, 3 * 2))

    def stn(self, x):
        xs = self.localization(x)
        xs = xs.view(-1, 10 * 3 * 3)
        theta = self.fc_loc(xs).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    def forward(self, x):
        x = self.stn(x)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def stn_classifier() -> STNClassifier:
    """Seeded random weights. The tutorial starts fc_loc[2] at the identity transform with zero
    weights; here its weights are small random ones around that identity, so that θ depends on
    the input and the sampler sees a real (rotated, scaled, shifted) transform."""
    torch.manual_seed(SEED)
    m = STNClassifier()
    with torch.no_grad():
        m.fc_loc[2].weight.normal_(0.0, 0.05)
        m.fc_loc[2].bias.copy_(torch.tensor([0.9, 0.2, 0.05, -0.15, 1.1, -0.1]))
    return m.eval()


class FlowWarp(nn.Module):
    """conv → ReLU → conv → tanh·max_flow predicts the flow (pixels); the image is warped backward
    along it (RAFT's bilinear_sampler: grid = 2·(base + flow)/(size − 1) − 1, align_corners=True)."""

    def __init__(self, h: int, w: int, max_flow: float = 3.0):
        super().__init__()
        self.h, self.w, self.max_flow = h, w, max_flow
        self.flow1 = nn.Conv2d(3, 16, 3, padding=1)
        self.flow2 = nn.Conv2d(16, 2, 3, padding=1)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        self.register_buffer("base", torch.stack([xs, ys], dim=0)[None])     # (1, 2, H, W): x, y in pixels

    def forward(self, img):
        flow = self.max_flow * torch.tanh(self.flow2(F.relu(self.flow1(img))))
        coords = self.base + flow
        gx = 2.0 * coords[:, 0] / (self.w - 1) - 1.0
        gy = 2.0 * coords[:, 1] / (self.h - 1) - 1.0
        grid = torch.stack([gx, gy], dim=-1)                                   # (N, H, W, 2)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True), flow


FLOW_HW = (24, 32)


def flow_warp() -> FlowWarp:
    """Seeded random weights (no trained flow estimator): flows up to ±3 px, some of them leaving
    the 24×32 image (zeros there)."""
    torch.manual_seed(SEED + 1)
    return FlowWarp(*FLOW_HW).eval()


class DeformSampler(nn.Module):
    """Deformable-conv-v1 sampling: offsets from a 3×3 conv (2 per tap, dy then dx as in DCN),
    every tap sampled by one grid_sample over a (N, 9·H, W, 2) grid, the C·9 taps combined by a
    1×1 conv. Every tensor has at most 4 dimensions (the GPU delegate's limit)."""

    def __init__(self, c: int, h: int, w: int, out: int = 8):
        super().__init__()
        self.c, self.h, self.w = c, h, w
        self.offset = nn.Conv2d(c, 18, 3, padding=1)
        self.combine = nn.Conv2d(c * 9, out, 1)
        ky, kx = torch.meshgrid(torch.arange(-1.0, 2.0), torch.arange(-1.0, 2.0), indexing="ij")
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        # (1, 9, H, W) pixel positions p + p_k of every tap
        self.register_buffer("py", (ys[None] + ky.reshape(9, 1, 1))[None])
        self.register_buffer("px", (xs[None] + kx.reshape(9, 1, 1))[None])

    def forward(self, x):
        n = x.shape[0]
        off = self.offset(x)                     # (N, 18, H, W): dy, dx of tap 0, then of tap 1, …
        gy = 2.0 * (self.py + off[:, 0::2]) / (self.h - 1) - 1.0
        gx = 2.0 * (self.px + off[:, 1::2]) / (self.w - 1) - 1.0
        grid = torch.stack([gx.reshape(n, 9 * self.h, self.w), gy.reshape(n, 9 * self.h, self.w)], dim=-1)
        s = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)   # (N, C, 9H, W)
        return self.combine(s.reshape(n, self.c * 9, self.h, self.w))


DEFORM_SHAPE = (1, 4, 16, 16)


def deform_sampler() -> DeformSampler:
    """Seeded random weights; the offset conv's weights are scaled ×4 so that offsets reach about
    ±1–2 px (a freshly initialised DCN predicts zero offsets, which would test nothing)."""
    torch.manual_seed(SEED + 2)
    m = DeformSampler(*DEFORM_SHAPE[1:])
    with torch.no_grad():
        m.offset.weight.mul_(4.0)
    return m.eval()


class GridSampleCombos(nn.Module):
    """Twelve GridSamples of the input on one run-time grid 1.3·tanh(conv(x)) (|g| up to 1.3:
    out of range in both directions), one output per combination."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        grid = (1.3 * torch.tanh(self.conv(x))).permute(0, 2, 3, 1)
        return tuple(F.grid_sample(x, grid, mode=m, padding_mode=p, align_corners=a) for m, p, a in COMBOS)


COMBO_SHAPE = (1, 3, 12, 16)


def grid_sample_combos() -> GridSampleCombos:
    """Seeded random conv weights, ×3 so that tanh saturates and the grid covers [−1.3, 1.3]."""
    torch.manual_seed(SEED + 3)
    m = GridSampleCombos()
    with torch.no_grad():
        m.conv.weight.mul_(3.0)
    return m.eval()
