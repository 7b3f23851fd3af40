"""The cascade baseline of the Attention Mesh paper: a face-mesh network, then an eye & iris
network on two eye crops and a lips network on a lips crop, each cropped from the IMAGE
(not from features) around the mesh's landmarks and run in succession.

- `FaceMeshNet`: MediaPipe's face_landmark.tflite topology (468 xyz points + face flag).
- `IrisNet`: MediaPipe's iris_landmark.tflite topology (64×64 crop of one eye → 71 eye
  contour/brow points and 5 iris points, xyz in crop pixels), built from bottleneck blocks.
- `LipsNet`: a small BlazeBlock network of our own (64×64 lips crop → 80 points); MediaPipe
  ships no lips model, so it has seeded random weights only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..attention_mesh.regions import LEFT_EYE, LIPS, RIGHT_EYE
from ..layers import BlazeBlock, ConvPReLU, SamePadConv, _cols, blaze_stage, check_image_input, crop_matrix, \
    sample_at, sample_crop, transform_points, unit_direction
from ..spec import TensorSpec


@dataclass(frozen=True)
class CascadeConfig:
    input_size: int = 192
    num_mesh: int = 468
    # Eye ROI as in MediaPipe's IrisLandmarkLandmarksToRoi: rotation from the two eye corners
    # (start → end keypoint), square side = scale × the longer side of the corners' axis-aligned box.
    left_eye_corners: tuple[int, int] = (33, 133)
    right_eye_corners: tuple[int, int] = (362, 263)
    eye_scale: float = 2.3
    eye_crop: int = 64
    # Lips ROI (our design, as the attention mesh's lips crop but on the image).
    lips_corners: tuple[int, int] = (61, 291)
    lips_scale: tuple[float, float] = (1.5, 1.5)
    lips_crop: int = 64
    iris_contour: int = 16          # iris z = mean mesh z of the eye's first 16 (contour) points


# The iris model orders its 5 points centre, +x, −y, −x, +y in its (left-eye) crop. Mirrored back,
# the right eye's points come out as centre, −x, −y, +x, +y in the image (MediaPipe's iris
# pipeline leaves them so); the 478-point convention (attention model, DESIGN §2) uses the
# unmirrored order for both eyes, so the right iris swaps points 1 and 3. Measured on the golden
# crops: without the swap points 1/3 sit ~9.7 px from the attention model's, with it ~1 px.
MIRRORED_IRIS_ORDER = (0, 3, 2, 1, 4)


# ---------------------------------------------------------------------------------------------
# Mesh model (face_landmark.tflite)

class FaceMeshNet(nn.Module):
    """192×192 RGB → 468 xyz points (input pixels) and the face-flag logit.

    Shared trunk to 6×6×128; the mesh branch and the face-flag branch each downsample to 3×3
    on their own (MediaPipe's face_landmark.tflite branches before the last stride-2 block)."""

    def __init__(self, num_mesh: int = 468):
        super().__init__()
        self.num_mesh = num_mesh
        self.stem = ConvPReLU(3, 16, kernel=3, stride=2)
        blocks = blaze_stage(16, 16, 2, downsample=False)
        for cin, cout in ((16, 32), (32, 64), (64, 128), (128, 128)):
            blocks += blaze_stage(cin, cout, 2, downsample=True)
        self.backbone = nn.Sequential(*blocks)
        self.mesh_branch = nn.Sequential(*blaze_stage(128, 128, 2, downsample=True),
                                         ConvPReLU(128, 32), BlazeBlock(32, 32))
        self.mesh_head = nn.Conv2d(32, num_mesh * 3, 3)
        self.flag_branch = nn.Sequential(*blaze_stage(128, 128, 0, downsample=True),
                                         ConvPReLU(128, 32), BlazeBlock(32, 32))
        self.flag_head = nn.Conv2d(32, 1, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mesh (N,468,3) in input pixels, face-flag logit (N,1))."""
        h = self.backbone(self.stem(x))
        mesh = self.mesh_head(self.mesh_branch(h)).reshape(x.shape[0], self.num_mesh, 3)
        logit = self.flag_head(self.flag_branch(h)).reshape(x.shape[0], 1)
        return mesh, logit


# ---------------------------------------------------------------------------------------------
# Eye & iris model (iris_landmark.tflite)

class Bottleneck(nn.Module):
    """Residual bottleneck of MediaPipe's iris model:
    project (1×1, or 2×2 stride 2 VALID when downsampling) cin→mid + PReLU → depthwise 3×3
    (SAME) → 1×1 mid→cout → + skip → PReLU. The skip of a stride-2 block is a 2×2 max-pool;
    extra output channels of the skip are zeros."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1):
        super().__init__()
        if cout < cin:
            raise ValueError(f"Bottleneck cannot shrink channels ({cin}→{cout})")
        self.cin, self.mid, self.cout, self.stride = cin, mid, cout, stride
        self.project = nn.Conv2d(cin, mid, 2 if stride == 2 else 1, stride)
        self.project_act = nn.PReLU(mid)
        self.dw = SamePadConv(mid, mid, 3, groups=mid)
        self.expand = nn.Conv2d(mid, cout, 1)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(self.dw(self.project_act(self.project(x))))
        skip = F.max_pool2d(x, 2, 2) if self.stride == 2 else x
        if self.cout > self.cin:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.cout - self.cin))
        return self.act(h + skip)


def bottleneck_stage(cin: int, cout: int, n_blocks: int, downsample: bool) -> list[nn.Module]:
    """An optional stride-2 bottleneck (cin→cout) and `n_blocks` bottlenecks at cout, all with
    cout/2 middle channels (as in iris_landmark.tflite)."""
    blocks: list[nn.Module] = []
    if downsample:
        blocks.append(Bottleneck(cin, cout // 2, cout, stride=2))
    elif cin != cout:
        raise ValueError("a stage without downsampling keeps its channel count")
    blocks += [Bottleneck(cout, cout // 2, cout) for _ in range(n_blocks)]
    return blocks


class IrisNet(nn.Module):
    """64×64 RGB crop of one (left-side) eye → eye contour/brows (N,71,3) and iris (N,5,3),
    x,y,z in crop pixels. Trunk to 8×8×128, then one branch per output."""

    OUTPUTS = (("eye", 71), ("iris", 5))

    def __init__(self):
        super().__init__()
        self.stem = ConvPReLU(3, 64, kernel=3, stride=2)
        self.trunk = nn.Sequential(*bottleneck_stage(64, 64, 4, downsample=False),
                                   *bottleneck_stage(64, 128, 4, downsample=True),
                                   *bottleneck_stage(128, 128, 0, downsample=True))
        self.branches = nn.ModuleDict()
        for name, n_points in self.OUTPUTS:
            self.branches[name] = nn.Sequential(
                *bottleneck_stage(128, 128, 2, downsample=False),
                *bottleneck_stage(128, 128, 2, downsample=True),
                *bottleneck_stage(128, 128, 2, downsample=True),
                nn.Conv2d(128, n_points * 3, 2))

    def forward(self, crop: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(self.stem(crop))
        return {name: b(h).reshape(crop.shape[0], -1, 3) for name, b in self.branches.items()}


# ---------------------------------------------------------------------------------------------
# Lips model (ours; no shipped weights)

class LipsNet(nn.Module):
    """64×64 RGB lips crop → 80 lips points (N,80,2) in crop pixels. BlazeBlocks down to 2×2."""

    def __init__(self, num_points: int = 80):
        super().__init__()
        self.num_points = num_points
        blocks: list[nn.Module] = [ConvPReLU(3, 16, kernel=3, stride=2)]        # 32×32
        blocks += blaze_stage(16, 16, 1, downsample=False)
        for cin, cout in ((16, 32), (32, 64), (64, 128), (128, 128)):           # 16, 8, 4, 2
            blocks += blaze_stage(cin, cout, 1, downsample=True)
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv2d(128, num_points * 2, 2)

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(crop)).reshape(crop.shape[0], self.num_points, 2)


# ---------------------------------------------------------------------------------------------
# ROI

def eye_roi_matrix(points: torch.Tensor, start_idx: int, end_idx: int, crop: int, scale: float,
                   flip: bool = False) -> torch.Tensor:
    """Affine (N,2,3) mapping eye-crop pixels to `points`' frame, MediaPipe's eye ROI
    (IrisLandmarkLandmarksToRoi: LandmarksToDetection → DetectionsToRects(rotation from
    keypoint 0 to 1, target 0°) → RectTransformation(scale 2.3, square_long)):
    centre = midpoint of the two corners, rotation = angle of start→end, side = scale ×
    max(|dx|, |dy|) (the corners' axis-aligned box, squared on its longer side).

    This differs from `layers.crop_matrix` (rotated box of a subset, per-axis size).
    `flip` mirrors the crop horizontally (MediaPipe's right eye): x_crop → crop − x_crop,
    folded into the matrix so crop and point mapping stay one affine each.

    Written for the TFLite GPU delegate, as `layers.crop_affines`: rank-2 tensors, 1-D constant
    gathers of single columns (no scalar indexing), no comparison or select."""
    n, p, d = points.shape
    flat = points.reshape(n, p * d)
    sx, sy = _cols(flat, [start_idx * d]), _cols(flat, [start_idx * d + 1])         # (N,1) each
    ex, ey = _cols(flat, [end_idx * d]), _cols(flat, [end_idx * d + 1])
    dx, dy = ex - sx, ey - sy
    # Equal to MediaPipe's angle for corners ≥ 1e-4 px apart; closer, the crop side 2.3·max(|dx|, |dy|)
    # < 2.3e-4 px makes the rotation immaterial.
    c, s = unit_direction(dx, dy)
    cx, cy = (ex + sx) * 0.5, (ey + sy) * 0.5
    k = scale * torch.maximum(dx.abs(), dy.abs()) / crop
    fx = -1.0 if flip else 1.0
    a00, a01 = fx * c * k, -s * k
    a10, a11 = fx * s * k, c * k
    half = crop / 2
    # crop centre (half, half) maps to the ROI centre either way (the flip is about it).
    tx = cx - (a00 + a01) * half
    ty = cy - (a10 + a11) * half
    return torch.cat([a00, a01, tx, a10, a11, ty], dim=1).reshape(n, 2, 3)


def batched_sample_grid(matrix: torch.Tensor, crop_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """`layers.sample_grid` for a batch of B > 1 matrices, with the same arithmetic (equal results):
    each matrix entry is first repeated along the crop's h·w pixels by a MatMul with a one-hot row
    (exact: one product by 1 and additions of zeros), so every elementwise op broadcasts one input
    at most ((B, h·w) with a constant (1, h·w)); the GPU delegate has no two-sided broadcast
    ((B,1) × (1,h·w))."""
    h, w = crop_hw
    dtype, device = matrix.dtype, matrix.device
    v, u = torch.meshgrid(torch.arange(h, dtype=dtype, device=device) + 0.5,
                          torch.arange(w, dtype=dtype, device=device) + 0.5, indexing="ij")
    u, v = u.reshape(1, h * w), v.reshape(1, h * w)
    m = matrix.reshape(matrix.shape[0], 6)
    # The translations less ½ first (as sample_grid), then all six entries repeated at once.
    m = m - torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.0, 0.5]], dtype=dtype, device=device)

    def entry(j: int) -> torch.Tensor:                                     # (B, h·w)
        # A constant built outside torch (a traced in-place write would become a scatter op).
        onehot = np.zeros((6, h * w), dtype=np.float32)
        onehot[j] = 1.0
        return m @ torch.from_numpy(onehot).to(dtype=dtype, device=device)

    x = entry(0) * u + entry(1) * v + entry(2)
    y = entry(3) * u + entry(4) * v + entry(5)
    return x, y


# ---------------------------------------------------------------------------------------------
# The cascade

class FaceMeshCascade(nn.Module):
    """mesh → (left eye, right eye, lips) image crops → iris/lips models → 478 landmarks."""

    def __init__(self, cfg: CascadeConfig, input_spec: TensorSpec):
        super().__init__()
        self.cfg = cfg
        self.input_spec = input_spec
        self.mesh = FaceMeshNet(cfg.num_mesh)
        self.iris = IrisNet()
        self.lips = LipsNet(len(LIPS))
        self.register_buffer("mirrored_iris_order", torch.tensor(MIRRORED_IRIS_ORDER, dtype=torch.int32),
                             persistent=False)
        self.register_buffer("lips_subset", torch.tensor(LIPS, dtype=torch.int32), persistent=False)
        # 478 assembly as one constant-index gather over [mesh xy | lips | left eye | right eye].
        index = list(range(cfg.num_mesh))
        offset = cfg.num_mesh
        for subset in (LIPS, LEFT_EYE, RIGHT_EYE):
            for j, i in enumerate(subset):
                index[i] = offset + j
            offset += len(subset)
        self.register_buffer("assembly_index", torch.tensor(index, dtype=torch.int32), persistent=False)
        self.register_buffer("left_contour", torch.tensor(LEFT_EYE[:cfg.iris_contour], dtype=torch.int32),
                             persistent=False)
        self.register_buffer("right_contour", torch.tensor(RIGHT_EYE[:cfg.iris_contour], dtype=torch.int32),
                             persistent=False)

    def eye_matrices(self, mesh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(left, right) eye-crop matrices, crop px → input px; the right one mirrored."""
        cfg = self.cfg
        left = eye_roi_matrix(mesh, *cfg.left_eye_corners, cfg.eye_crop, cfg.eye_scale)
        right = eye_roi_matrix(mesh, *cfg.right_eye_corners, cfg.eye_crop, cfg.eye_scale, flip=True)
        return left, right

    def eye_crops(self, x: torch.Tensor, mesh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both eyes as one (2N,3,64,64) batch of iris-model inputs (left eyes, then mirrored
        right eyes) and their (2N,2,3) matrices."""
        left, right = self.eye_matrices(mesh)
        m = torch.cat([left, right], dim=0)
        hw = (self.cfg.eye_crop, self.cfg.eye_crop)
        return sample_at(torch.cat([x, x], dim=0), *batched_sample_grid(m, hw), hw), m

    def lips_matrix(self, mesh: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        return crop_matrix(mesh, self.lips_subset, *cfg.lips_corners, (cfg.lips_crop, cfg.lips_crop),
                           cfg.lips_scale)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, self.input_spec)
        n = x.shape[0]
        cfg = self.cfg
        mesh, logit = self.mesh(x)
        face_flag = torch.sigmoid(logit)

        crops, m_eye = self.eye_crops(x, mesh)
        eye_out = self.iris(crops)
        eye = transform_points(eye_out["eye"][..., :2], m_eye)
        iris = transform_points(eye_out["iris"][..., :2], m_eye)

        m_lips = self.lips_matrix(mesh)
        lips = transform_points(self.lips(sample_crop(x, m_lips, (cfg.lips_crop, cfg.lips_crop))), m_lips)

        region = {"lips": lips, "left_eye": eye[:n], "right_eye": eye[n:],
                  "left_iris": iris[:n], "right_iris": iris[n:].index_select(1, self.mirrored_iris_order)}
        return {"landmarks": self.assemble(mesh, region), "face_flag": face_flag, **region}

    def assemble(self, mesh: torch.Tensor, region: dict[str, torch.Tensor]) -> torch.Tensor:
        """478 points: lips/eyes overwrite x,y of the mesh at their index lists (z kept); irises
        appended (left 468–472, right 473–477) with z = mean mesh z of that eye's contour."""
        n, p, d = mesh.shape
        z = _cols(mesh.reshape(n, p * d), range(2, p * d, d))      # mesh[..., 2] as a 1-D constant gather
        all_xy = torch.cat([mesh[..., :2], region["lips"], region["left_eye"], region["right_eye"]], dim=1)
        xy = torch.cat([all_xy.index_select(1, self.assembly_index), region["left_iris"], region["right_iris"]],
                       dim=1)
        zl = z.index_select(1, self.left_contour).mean(dim=1, keepdim=True).expand(n, region["left_iris"].shape[1])
        zr = z.index_select(1, self.right_contour).mean(dim=1, keepdim=True).expand(n, region["right_iris"].shape[1])
        return torch.cat([xy, torch.cat([z, zl, zr], dim=1).unsqueeze(-1)], dim=-1)
