"""The Attention Mesh: one network predicts the 468-point mesh, a spatial transformer crops
its feature map around lips and eyes, and region heads refine lips, eyes and irises.

One configurable implementation serves MediaPipe's shipped topology (`attention_mesh`) and
the paper's configuration (`attention_mesh_paper`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..layers import (BlazeBlock, ConvPReLU, CropSampler, blaze_stage, check_image_input, crop_affines,
                      region_affine, transform_points_joint)
from ..spec import TensorSpec


@dataclass(frozen=True)
class RegionConfig:
    """One attention region: which landmarks place the crop and which outputs its head predicts.

    `subset` doubles as the mesh indices the region's first output overwrites (MediaPipe's
    refinement lists are the op's subset lists)."""

    name: str
    left_idx: int
    right_idx: int
    subset: tuple[int, ...]
    outputs: tuple[tuple[str, int], ...]  # (output name, number of 2-D points) per branch
    scale: tuple[float, float] = (1.5, 1.5)
    target_rotation: float = 0.0


@dataclass(frozen=True)
class AttentionMeshConfig:
    input_size: int = 192
    stem_channels: int = 16
    # (channels, blocks) per resolution; every stage after the first starts with a stride-2 block.
    stages: tuple[tuple[int, int], ...] = ((16, 2), (32, 2), (64, 2), (128, 2), (128, 2), (128, 2))
    feature_stage: int = 1          # crops sample the output of this stage's stride-2 block
    head_channels: int = 32
    crop_size: int = 16
    region_trunk: tuple[tuple[int, int], ...] = ((32, 2), (64, 2), (128, 0))
    region_branch: tuple[tuple[int, int], ...] = ((128, 2), (128, 2))
    num_mesh: int = 468
    iris_contour: int = 16          # MediaPipe: iris z = mean z of the eye's first 16 (contour) points
    regions: tuple[RegionConfig, ...] = field(default_factory=tuple)

    @property
    def feature_size(self) -> int:
        return self.input_size // 2 ** (self.feature_stage + 1)

    @property
    def feature_scale(self) -> float:
        """Feature-map pixels per input pixel (MediaPipe: 0.25)."""
        return self.feature_size / self.input_size

    @property
    def feature_channels(self) -> int:
        return self.stages[self.feature_stage][0]

    @property
    def final_size(self) -> int:
        return self.input_size // 2 ** len(self.stages)

    @property
    def region_final_size(self) -> int:
        downs = sum(1 for i, _ in enumerate(self.region_trunk) if i > 0) + len(self.region_branch) - 1
        return self.crop_size // 2 ** downs


class RegionHead(nn.Module):
    """Shared trunk on the crop, then one branch per output (eye and iris split here)."""

    def __init__(self, cfg: AttentionMeshConfig, region: RegionConfig):
        super().__init__()
        trunk: list[nn.Module] = []
        cin = cfg.feature_channels
        for i, (c, n) in enumerate(cfg.region_trunk):
            trunk += blaze_stage(cin, c, n, downsample=i > 0)
            cin = c
        self.trunk = nn.Sequential(*trunk)
        k = cfg.region_final_size
        self.branches = nn.ModuleDict()
        for out_name, n_points in region.outputs:
            layers: list[nn.Module] = []
            c_in = cin
            for i, (c, n) in enumerate(cfg.region_branch):
                layers += blaze_stage(c_in, c, n, downsample=i > 0)
                c_in = c
            layers += [ConvPReLU(c_in, cfg.head_channels), BlazeBlock(cfg.head_channels, cfg.head_channels),
                       nn.Conv2d(cfg.head_channels, n_points * 2, k)]
            self.branches[out_name] = nn.Sequential(*layers)

    def forward(self, crop: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(crop)
        return {name: b(h).reshape(h.shape[0], -1, 2) for name, b in self.branches.items()}


class AttentionMesh(nn.Module):
    def __init__(self, cfg: AttentionMeshConfig, input_spec: TensorSpec):
        super().__init__()
        if not cfg.regions:
            raise ValueError("AttentionMeshConfig needs at least one region")
        self.cfg = cfg
        self.input_spec = input_spec
        self.stem = ConvPReLU(3, cfg.stem_channels, kernel=3, stride=2)
        blocks: list[nn.Module] = []
        cin = cfg.stem_channels
        self.feature_index = -1
        for i, (c, n) in enumerate(cfg.stages):
            if i == cfg.feature_stage:
                self.feature_index = len(blocks) if i > 0 else -1
            blocks += blaze_stage(cin, c, n, downsample=i > 0)
            cin = c
        self.backbone = nn.ModuleList(blocks)
        self.neck = nn.Sequential(ConvPReLU(cin, cfg.head_channels), BlazeBlock(cfg.head_channels, cfg.head_channels))
        k = cfg.final_size
        self.mesh_head = nn.Conv2d(cfg.head_channels, cfg.num_mesh * 3, k)
        self.face_flag_head = nn.Conv2d(cfg.head_channels, 1, k)
        self.regions = nn.ModuleDict({r.name: RegionHead(cfg, r) for r in cfg.regions})
        self.samplers = nn.ModuleDict({r.name: CropSampler((cfg.crop_size, cfg.crop_size)) for r in cfg.regions})
        for r in cfg.regions:
            self.register_buffer(f"subset_{r.name}", torch.tensor(r.subset, dtype=torch.int32), persistent=False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone: (feature map the crops sample from, final features)."""
        h = self.stem(x)
        feat = h
        for i, block in enumerate(self.backbone):
            h = block(h)
            if i == self.feature_index:
                feat = h
        return feat, self.neck(h)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_image_input(x, self.input_spec)
        cfg = self.cfg
        n = x.shape[0]
        feat, top = self.features(x)
        mesh = self.mesh_head(top).reshape(n, cfg.num_mesh * 3)                    # flat x,y,z
        face_flag = torch.sigmoid(self.face_flag_head(top).reshape(n, 1))
        s = cfg.feature_scale
        crop_hw = (cfg.crop_size, cfg.crop_size)
        mesh_feat = (mesh * s).reshape(n, cfg.num_mesh, 3)
        regs = cfg.regions
        # All crop matrices in one graph (N, 6R); each region samples through its own.
        m = crop_affines(mesh_feat, [r.subset for r in regs], [r.left_idx for r in regs],
                         [r.right_idx for r in regs], crop_hw, [r.scale for r in regs],
                         [r.target_rotation for r in regs])
        heads, owner = [], []
        for i, r in enumerate(regs):
            crop = self.samplers[r.name](feat, region_affine(m, i, len(regs)))
            outs = self.regions[r.name](crop)
            for name, k in r.outputs:
                heads.append(outs[name].reshape(n, 2 * k))
                owner += [i] * k
        # Heads predict in the crop frame ×(1/s); every point goes through its region's matrix
        # with the translation ×(1/s) to land in input pixels — one transform for all outputs.
        joint = transform_points_joint(torch.cat(heads, dim=1), m, owner, len(regs), 1.0 / s)
        landmarks = self.assemble(mesh, joint).reshape(n, -1, 3)
        regions, offset = {}, 0
        for r in regs:
            for name, k in r.outputs:
                regions[name] = joint.index_select(1, torch.arange(offset, offset + 2 * k, dtype=torch.int32,
                                                                   device=joint.device)).reshape(n, k, 2)
                offset += 2 * k
        return {"landmarks": landmarks, "face_flag": face_flag, **regions}

    def assemble(self, mesh: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """478 landmarks, flat (N, 478·3): region points overwrite x,y of the mesh at their subset
        indices (z kept); irises are appended with z = mean mesh z of their eye's contour points.

        `mesh` is (N, 468·3) and `joint` the regions' outputs side by side (N, 2K), in region and
        output order. One concatenation and one constant-index gather (rank-2 tensors only)."""
        cfg = self.cfg
        parts = [mesh, joint]
        col: dict[tuple[str, int, int], int] = {}     # (source, point, coord) → column
        offset = cfg.num_mesh * 3
        for r in cfg.regions:
            for name, k in r.outputs:
                for j in range(k):
                    col[(name, j, 0)], col[(name, j, 1)] = offset + 2 * j, offset + 2 * j + 1
                offset += 2 * k
        if offset != cfg.num_mesh * 3 + joint.shape[1]:
            raise ValueError(f"joint region outputs have {joint.shape[1]} columns, the regions "
                             f"{offset - cfg.num_mesh * 3}")
        index = [3 * i + c for i in range(cfg.num_mesh) for c in range(3)]
        iris_cols: list[int] = []
        for r in cfg.regions:
            (main, _), *extra = r.outputs
            for j, idx in enumerate(r.subset):
                index[3 * idx], index[3 * idx + 1] = col[(main, j, 0)], col[(main, j, 1)]
            for name, k in extra:
                contour = [3 * i + 2 for i in r.subset[: cfg.iris_contour]]
                parts.append(mesh.index_select(1, torch.tensor(contour, dtype=torch.int32,
                                                               device=mesh.device)).mean(dim=1, keepdim=True))
                z_col = offset
                offset += 1
                iris_cols += [c for j in range(k) for c in (col[(name, j, 0)], col[(name, j, 1)], z_col)]
        index += iris_cols
        table = torch.cat(parts, dim=1)
        return table.index_select(1, torch.tensor(index, dtype=torch.int32, device=mesh.device))


def with_regions(model: AttentionMesh, regions: tuple[RegionConfig, ...]) -> None:
    """Replace the model's region configuration (e.g. with the one read from a weight file).
    Regions must match the existing heads by name and point counts."""
    by_name = {r.name: r for r in regions}
    if set(by_name) != {r.name for r in model.cfg.regions}:
        raise ValueError(f"regions {sorted(by_name)} do not match the model's "
                         f"{sorted(r.name for r in model.cfg.regions)}")
    ordered = []
    for old in model.cfg.regions:
        new = by_name[old.name]
        if new.outputs != old.outputs or len(new.subset) != old.outputs[0][1]:
            raise ValueError(f"region {old.name}: outputs {new.outputs} do not match {old.outputs}")
        ordered.append(new)
        getattr(model, f"subset_{new.name}").copy_(torch.tensor(new.subset, dtype=torch.int32))
    from dataclasses import replace
    model.cfg = replace(model.cfg, regions=tuple(ordered))
