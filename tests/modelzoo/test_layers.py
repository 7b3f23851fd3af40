"""Spatial transformer and blocks against hand-computed references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import modelzoo
from modelzoo.layers import (BlazeBlock, count_macs, count_params, crop_matrix, sample_crop, tf_same_pad,
                             transform_points)


def mediapipe_bilinear(feat: np.ndarray, m: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Plain loops following MediaPipe's TransformTensorBilinear v2 (C,H,W layout)."""
    c, h, w = feat.shape
    a = m.astype(np.float64)
    tx = a[0, 2] + 0.5 * a[0, 0] + 0.5 * a[0, 1] - 0.5
    ty = a[1, 2] + 0.5 * a[1, 0] + 0.5 * a[1, 1] - 0.5
    out = np.zeros((c, *out_hw))
    for v in range(out_hw[0]):
        for u in range(out_hw[1]):
            x = a[0, 0] * u + a[0, 1] * v + tx
            y = a[1, 0] * u + a[1, 1] * v + ty
            if x < 0 or x > w - 1 or y < 0 or y > h - 1:
                continue
            x0, y0 = math.floor(x), math.floor(y)

            def read(yy, xx):
                return feat[:, yy, xx] if 0 <= yy < h and 0 <= xx < w else np.zeros(c)
            fx, fy = x - x0, y - y0
            top = (1 - fx) * read(y0, x0) + fx * read(y0, x0 + 1)
            bot = (1 - fx) * read(y0 + 1, x0) + fx * read(y0 + 1, x0 + 1)
            out[:, v, u] = (1 - fy) * top + fy * bot
    return out


def rot(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def test_tf_same_padding_is_asymmetric():
    assert tf_same_pad(192, 3, 2) == (0, 1)
    assert tf_same_pad(96, 3, 1) == (1, 1)
    assert tf_same_pad(5, 3, 2) == (1, 1)
    assert tf_same_pad(3, 3, 3) == (0, 0)


def test_downsampling_block_matches_tf_same():
    """A stride-2 block pads right/bottom only: output (0,0)'s 3×3 window starts at input (0,0)."""
    blk = BlazeBlock(2, 4, stride=2)
    with torch.no_grad():
        for p in blk.parameters():
            p.zero_()
        blk.dw.weight[:, 0, 1:, 1:] = 1.0  # lower-right 2×2 taps of each 3×3 window
        blk.pw.weight[:, :, 0, 0] = torch.tensor([[1.0, 0], [0, 1], [0, 0], [0, 0]])
        blk.act.weight.fill_(1.0)
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(1, 2, 6, 6)
    y = blk(x)
    # TF-SAME: the taps read x[1:3,1:3] (torch's symmetric padding=1 would read x[0:2,0:2]);
    # the skip is the 2×2 max-pool of x[0:2,0:2].
    expected_dw = x[0, 0, 1:3, 1:3].sum() + x[0, 0, 0:2, 0:2].max()
    assert y[0, 0, 0, 0].item() == pytest.approx(expected_dw.item())
    assert y.shape == (1, 4, 3, 3)
    assert torch.equal(y[0, 2:], torch.zeros(2, 3, 3))  # zero channel padding, zero pw rows


def test_sampler_translation_is_exact_on_a_linear_map():
    h = w = 12
    yy, xx = np.mgrid[0:h, 0:w]
    feat = torch.from_numpy((10.0 * yy + xx).astype(np.float32))[None, None]
    m = torch.tensor([[[1.0, 0.0, 2.3], [0.0, 1.0, 1.7]]])
    out = sample_crop(feat, m, (4, 4))[0, 0].numpy()
    # Source of crop pixel (u,v): (u + 2.3, v + 1.7); bilinear is exact on a linear map.
    v, u = np.mgrid[0:4, 0:4]
    np.testing.assert_allclose(out, 10 * (v + 1.7) + (u + 2.3), atol=1e-4)


def test_sampler_out_of_bounds_is_exactly_zero():
    feat = torch.ones(1, 3, 8, 8)
    m = torch.tensor([[[1.0, 0.0, -2.25], [0.0, 1.0, 5.5]]])
    out = sample_crop(feat, m, (4, 4))[0]
    # x = u - 2.25: u=0,1,2 fall left of 0 → 0; y = v + 5.5: v=2,3 give 7.5, 8.5 > 7 → 0
    expected = torch.zeros(4, 4)
    expected[:2, 3] = 1.0
    assert torch.equal(out, expected.expand(3, 4, 4))


def test_sampler_30_degree_rotation_matches_hand_loop():
    g = torch.Generator().manual_seed(0)
    feat = torch.rand(1, 5, 20, 20, generator=g)
    a = rot(30) * 1.3
    m = torch.tensor([[[a[0, 0], a[0, 1], 6.0], [a[1, 0], a[1, 1], -1.0]]], dtype=torch.float32)
    out = sample_crop(feat, m, (16, 16))[0].numpy()
    ref = mediapipe_bilinear(feat[0].numpy(), m[0].numpy(), (16, 16))
    assert (ref == 0).any() and (ref != 0).any()  # the crop straddles the border
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_crop_matrix_of_synthetic_landmarks_equals_hand_derived():
    c30, s30 = math.cos(math.radians(30)), math.sin(math.radians(30))
    u, v = np.array([c30, s30]), np.array([-s30, c30])
    centre = np.array([24.0, 30.0])
    pts = [np.array([10.0, 20.0]), np.array([10 + 8 * c30, 20 + 8 * s30])]      # rotation line at 30°
    pts += [centre + sa * 6 * u + sb * 3 * v for sa in (-1, 1) for sb in (-1, 1)]  # 12×6 box, 30°
    pts.append(centre + 2 * u)                                                      # an inner point
    lm = torch.tensor(np.array(pts), dtype=torch.float32)[None]
    m = crop_matrix(lm, torch.arange(2, 7), 0, 1, (16, 16), (1.5, 1.5))[0].double().numpy()
    # M = T(centre)·R(30°)·S(1.5·12/16, 1.5·6/16)·T(−8, −8)
    a = rot(30) @ np.diag([1.125, 0.5625])
    expected = np.concatenate([a, (centre - a @ [8, 8])[:, None]], axis=1)
    np.testing.assert_allclose(m, expected, atol=1e-5)
    # The crop's centre lands on the box centre, its corners on the box corners ×1.5.
    corner = m[:, :2] @ [16, 16] + m[:, 2]
    np.testing.assert_allclose(corner, centre + 1.5 * (6 * u + 3 * v), atol=1e-4)


def test_crop_matrix_agrees_with_atan2_formulation():
    """cos/sin from the normalised vector equal MediaPipe's atan2-based angle."""
    g = torch.Generator().manual_seed(1)
    lm = torch.rand(4, 30, 3, generator=g) * 48
    m = crop_matrix(lm, torch.arange(5, 30), 0, 1, (16, 16), (1.5, 1.5), target_rotation=0.2)
    for n in range(4):
        d = (lm[n, 1, :2] - lm[n, 0, :2]).double().numpy()
        r = 0.2 - math.atan2(d[1], d[0])           # MediaPipe's rotation
        rr = rot(math.degrees(r))
        sub = lm[n, 5:30, :2].double().numpy() @ rr.T
        lo, hi = sub.min(0), sub.max(0)
        centre = rot(math.degrees(-r)) @ ((lo + hi) / 2)
        a = rot(math.degrees(-r)) @ np.diag(1.5 * (hi - lo) / 16)
        expected = np.concatenate([a, (centre - a @ [8, 8])[:, None]], axis=1)
        np.testing.assert_allclose(m[n].double().numpy(), expected, atol=1e-4)


def test_transform_points_scales_translation_only():
    m = torch.tensor([[[0.5, -0.2, 3.0], [0.2, 0.5, 4.0]]])
    p = torch.tensor([[[8.0, 4.0]]])
    out = transform_points(p, m, 4.0)
    assert out[0, 0].tolist() == pytest.approx([0.5 * 8 - 0.2 * 4 + 12, 0.2 * 8 + 0.5 * 4 + 16])


def test_sampler_is_differentiable_in_features_and_matrix():
    feat = torch.rand(1, 4, 16, 16, requires_grad=True)
    m = torch.tensor([[[0.8, 0.3, 3.0], [-0.3, 0.8, 4.0]]], requires_grad=True)
    (sample_crop(feat, m, (8, 8)) ** 2).sum().backward()
    assert feat.grad.abs().sum() > 0 and m.grad.abs().sum() > 0


@pytest.mark.parametrize("model_id", ["attention_mesh_paper", "attention_mesh"])
def test_gradients_reach_the_backbone_through_the_crops(model_id):
    model = modelzoo.load_model(model_id, pretrained=False).train()
    x = torch.rand(1, *model.input_spec.shape[1:], generator=torch.Generator().manual_seed(0))
    feat, _ = model.features(x)
    cfg = model.cfg
    # A plausible mesh placement (random init predicts none); it carries no gradient.
    mesh = (0.3 + 0.4 * torch.rand(1, cfg.num_mesh, 3, generator=torch.Generator().manual_seed(1))) * cfg.input_size
    r = cfg.regions[0]
    m = crop_matrix(mesh * cfg.feature_scale, model.subset_lips, r.left_idx, r.right_idx,
                    (cfg.crop_size, cfg.crop_size), r.scale)
    crop = sample_crop(feat, m, (cfg.crop_size, cfg.crop_size))
    loss = sum(v.square().sum() for v in model.regions[r.name](crop).values())
    loss.backward()
    assert model.stem.conv.weight.grad.abs().sum() > 0
    assert model.backbone[0].dw.weight.grad.abs().sum() > 0
    assert model.mesh_head.weight.grad is None  # only the crop path was used


def test_paper_config_size_is_reported():
    model = modelzoo.load_model("attention_mesh_paper", pretrained=False)
    assert count_params(model) == 1_578_237
    assert count_macs(model, torch.zeros(1, 3, 256, 256)) == 81_402_144
    cfg = model.cfg
    assert (cfg.input_size, cfg.feature_size, cfg.crop_size, cfg.region_final_size * 2) == (256, 64, 24, 6)


def test_shipped_config_size_matches_mediapipe():
    model = modelzoo.load_model("attention_mesh", pretrained=False)
    assert count_params(model) == 1_189_277            # MediaPipe: 1.19 M parameters
    assert count_macs(model, torch.zeros(1, 3, 192, 192)) == pytest.approx(43.5e6, rel=0.01)


def test_joint_crop_matrices_and_point_transforms_equal_the_per_region_ones_bit_for_bit():
    from modelzoo.layers import (crop_affine, crop_affines, region_affine, transform_points_flat,
                                 transform_points_joint)
    g = torch.Generator().manual_seed(7)
    pts = torch.rand(2, 40, 3, generator=g) * 48
    subsets = [list(range(3, 12)), list(range(20, 25)), [30, 31, 39, 2]]          # unequal sizes
    lefts, rights = [0, 13, 26], [1, 14, 27]
    scales, rots = [(1.5, 1.5), (1.5, 1.2), (2.0, 1.5)], [0.0, 0.3, -0.7]
    joint = crop_affines(pts, subsets, lefts, rights, (16, 12), scales, rots)
    assert joint.shape == (2, 18)
    for r in range(3):
        one = crop_affine(pts, subsets[r], lefts[r], rights[r], (16, 12), scales[r], rots[r])
        assert torch.equal(region_affine(joint, r, 3), one)
    heads = [torch.rand(2, 2 * k, generator=g) * 16 for k in (4, 3, 5)]
    owner = [0] * 4 + [1] * 3 + [2] * 5
    got = transform_points_joint(torch.cat(heads, 1), joint, owner, 3, 0.25)
    want = torch.cat([transform_points_flat(h, region_affine(joint, r, 3), 0.25) for r, h in enumerate(heads)], 1)
    assert torch.equal(got, want)
    with pytest.raises(ValueError):
        transform_points_joint(torch.cat(heads, 1), joint, owner[:-1], 3)
    with pytest.raises(ValueError):
        crop_affines(pts, subsets, lefts[:2], rights, (16, 16), scales, rots)
