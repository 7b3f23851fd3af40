"""The MIL reference evaluator, op by op, against the MIL op definitions (coremltools docs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime.mil import OPS, UnsupportedMILOpError

rng = np.random.default_rng(0)


def run(name, **args):
    return OPS[name](args)


@pytest.mark.parametrize("pad_type, torch_pad", [("valid", 0), ("custom", (1, 2, 0, 1))])
@pytest.mark.parametrize("groups", [1, 4])
def test_conv(pad_type, torch_pad, groups):
    x = rng.standard_normal((1, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    args = dict(x=x, weight=w, bias=b, strides=np.array([2, 1]), dilations=np.array([1, 1]), groups=groups,
                pad_type=pad_type)
    xt = torch.from_numpy(x)
    if pad_type == "custom":
        args["pad"] = np.array(torch_pad)
        t, bo, l, r = torch_pad
        xt = F.pad(xt, (l, r, t, bo))
    ref = F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride=(2, 1), groups=groups).numpy()
    np.testing.assert_allclose(run("conv", **args), ref, atol=1e-5)


def test_conv_same_pads_after_like_tensorflow():
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    got = run("conv", x=x, weight=w, strides=np.array([2, 2]), pad_type="same")
    ref = F.conv2d(F.pad(torch.from_numpy(x), (0, 1, 0, 1)), torch.from_numpy(w), stride=2).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_max_pool_and_pad():
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    got = run("max_pool", x=x, kernel_sizes=np.array([2, 2]), strides=np.array([2, 2]), pad_type="valid")
    np.testing.assert_allclose(got, F.max_pool2d(torch.from_numpy(x), 2, 2).numpy())
    p = run("pad", x=x, pad=np.array([0, 0, 1, 2]), mode="constant", constant_val=0.0)
    assert p.shape == (1, 3, 6, 9) and p[..., 0].sum() == 0 and np.array_equal(p[..., 1:7], x)


@pytest.mark.parametrize("align", [True, False])
def test_resample_matches_grid_sample(align):
    x = rng.standard_normal((1, 3, 10, 12)).astype(np.float32)
    grid = rng.uniform(-1.2, 1.2, (1, 5, 6, 2)).astype(np.float32)
    got = run("resample", x=x, coordinates=grid, sampling_mode="bilinear", padding_mode="constant",
              padding_value=0.0, coordinates_mode="normalized_minus_one_to_one", align_corners=align)
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(grid), mode="bilinear", padding_mode="zeros",
                        align_corners=align).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_elementwise_and_reductions():
    x, y = rng.standard_normal((2, 5)).astype(np.float32), rng.standard_normal((1, 5)).astype(np.float32)
    np.testing.assert_allclose(run("sub", x=x, y=y), x - y)
    np.testing.assert_allclose(run("real_div", x=x, y=y), x / y)
    np.testing.assert_allclose(run("inverse", x=np.array([1.0, 3.0]), epsilon=1e-4), 1 / np.array([1.0001, 3.0001]))
    np.testing.assert_allclose(run("clip", x=x, alpha=-0.5, beta=0.5), np.clip(x, -0.5, 0.5))
    np.testing.assert_allclose(run("reduce_min", x=x, axes=np.array([1]), keep_dims=True), x.min(1, keepdims=True))
    np.testing.assert_allclose(run("reduce_mean", x=x, axes=np.array([0]), keep_dims=False), x.mean(0))
    np.testing.assert_allclose(run("sigmoid", x=x), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(run("floor", x=x), np.floor(x))
    a = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(run("prelu", x=a, alpha=np.array([0.1, 0.2, 0.3], np.float32)),
                               F.prelu(torch.from_numpy(a), torch.tensor([0.1, 0.2, 0.3])).numpy())


def test_shape_ops():
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    assert run("reshape", x=x, shape=np.array([2, 3, 4])).shape == (2, 3, 4)
    np.testing.assert_array_equal(run("gather", x=x, indices=np.array([3, 0, -1]), axis=1), x[:, [3, 0, 11]])
    np.testing.assert_array_equal(run("concat", values=[x, x], axis=1), np.concatenate([x, x], 1))
    np.testing.assert_array_equal(run("stack", values=[x, x], axis=-1), np.stack([x, x], -1))
    np.testing.assert_array_equal(run("cast", x=x, dtype="fp16"), x.astype(np.float16))


def test_unsupported_variants_are_refused_by_name():
    with pytest.raises(UnsupportedMILOpError, match="batch_dims"):
        run("gather", x=np.zeros((2, 3)), indices=np.zeros((2, 1), int), axis=1, batch_dims=1)
    with pytest.raises(UnsupportedMILOpError, match="bicubic"):
        run("resample", x=np.zeros((1, 1, 2, 2)), coordinates=np.zeros((1, 1, 1, 2)), sampling_mode="bicubic")
    with pytest.raises(UnsupportedMILOpError, match="wrap"):
        run("resample", x=np.zeros((1, 1, 2, 2)), coordinates=np.zeros((1, 1, 1, 2)), padding_mode="wrap")


def test_leaky_relu():
    x = np.array([-2.0, 0.0, 3.0], np.float32)
    np.testing.assert_allclose(run("leaky_relu", x=x, alpha=0.25), [-0.5, 0.0, 3.0])


def test_remaining_arithmetic_ops():
    x, y = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(run("add", x=x, y=y), x + y)
    np.testing.assert_allclose(run("mul", x=x, y=y), x * y)
    np.testing.assert_allclose(run("sqrt", x=np.abs(x)), np.sqrt(np.abs(x)))
    np.testing.assert_allclose(run("reduce_max", x=x, axes=np.array([1]), keep_dims=True), x.max(1, keepdims=True))
    np.testing.assert_allclose(run("reduce_sum", x=x, axes=np.array([0]), keep_dims=False), x.sum(0), rtol=1e-6)
    np.testing.assert_allclose(run("maximum", x=x, y=y), np.maximum(x, y))
    np.testing.assert_array_equal(run("abs", x=x), np.abs(x))
    np.testing.assert_array_equal(run("transpose", x=x, perm=np.array([1, 0])), x.T)
    np.testing.assert_array_equal(run("slice_by_index", x=x, begin=np.array([1, 0]), end=np.array([3, 4]),
                                      stride=np.array([1, 2])), x[1:3, 0:4:2])


def test_linear_matmul_relu():
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    w, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    want = F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(run("linear", x=x, weight=w, bias=b), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run("linear", x=x, weight=w, bias=None), want - b, rtol=1e-5, atol=1e-5)
    y = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(run("matmul", x=x, y=y, transpose_x=False, transpose_y=True),
                               x @ y.transpose(0, 2, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(run("relu", x=np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])


def test_expand_dims():
    """MIL expand_dims (torch.stack / unsqueeze convert to it): axes of the result, negative ones
    from its end, as torch.unsqueeze places them."""
    x = rng.standard_normal((2, 3)).astype(np.float32)
    assert run("expand_dims", x=x, axes=np.array([-1])).shape == (2, 3, 1)
    assert run("expand_dims", x=x, axes=np.array([0, 3])).shape == (1, 2, 3, 1)
    np.testing.assert_array_equal(run("expand_dims", x=x, axes=np.array([1])), torch.from_numpy(x).unsqueeze(1).numpy())


def test_tile():
    """MIL tile (what torch's expand of a size-1 axis converts to: the cascade spreads each iris's
    depth over its five points with it): reps[i] copies along axis i, one rep per axis, laid out as
    torch.Tensor.repeat lays them."""
    x = rng.standard_normal((2, 1, 3)).astype(np.float32)
    got = run("tile", x=x, reps=np.array([1, 4, 2]))
    assert got.shape == (2, 4, 6)
    np.testing.assert_array_equal(got, torch.from_numpy(x).repeat(1, 4, 2).numpy())
    with pytest.raises(UnsupportedMILOpError, match="2 reps for a rank-3"):
        run("tile", x=x, reps=np.array([2, 2]))


def test_tanh():
    """MIL tanh (what torch's tanh converts to; a flow head's activation) as torch computes it, in
    the input's dtype."""
    x = np.linspace(-6, 6, 41, dtype=np.float32)
    np.testing.assert_allclose(run("tanh", x=x), torch.tanh(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-7)
    assert run("tanh", x=x.astype(np.float16)).dtype == np.float16


TESTED_OPS = {"add", "linear", "matmul", "relu", "sub", "mul", "real_div", "maximum", "inverse", "clip", "floor", "sqrt", "sigmoid", "prelu",
              "leaky_relu", "cast", "reshape", "transpose", "concat", "stack", "gather", "slice_by_index",
              "reduce_min", "reduce_max", "reduce_mean", "reduce_sum", "pad", "conv", "max_pool", "resample",
              "affine", "log", "softmax", "tanh", "expand_dims", "tile", "abs"}


@pytest.mark.slow
@pytest.mark.parametrize("model, build", [("attention_mesh", "full_build"), ("face_detector", "detector_build"),
                                          ("face_mesh_cascade", "cascade_build")])
def test_every_op_of_our_programs_has_a_unit_test(model, build, request):
    from runtime.mil import MILProgram
    root = request.getfixturevalue(build)
    root = root[0] if isinstance(root, tuple) else root
    for precision in ("fp32", "fp16"):
        ops = set(MILProgram(root / f"{model}-{precision}.mlpackage").op_types) - {"const"}
        assert ops <= TESTED_OPS, (model, precision, ops - TESTED_OPS)


# -- resample / affine / log / softmax ---------------------------------------------------------
# Core ML's own outputs for the MIL ops (coremltools' op tests, iOS15 TestResample/TestAffine, run by
# Apple on macOS): x = [[11, 22], [33, 44]], coordinates (x, y) per output pixel.
_CT_X = np.array([11.0, 22.0, 33.0, 44.0], np.float32).reshape(1, 1, 2, 2)
_CT_COORDS = np.array([-1.0, -2.0, -3.7, -1.0, 0.0, 0.0, 3.5, 1.2], np.float32).reshape(1, 2, 2, 2)


@pytest.mark.parametrize("sampling, padding, coords_mode, align, value, want", [
    ("bilinear", "constant", "normalized_minus_one_to_one", True, 6.17, [8.585, 6.17, 27.5, 6.17]),
    ("nearest", "border", "unnormalized", False, -1.0, [11.0, 11.0, 11.0, 44.0]),
    ("bilinear", "reflection", "normalized_zero_to_one", True, -1.0, [22.0, 36.3, 11.0, 34.1]),
    ("nearest", "symmetric", "normalized_zero_to_one", False, -1.0, [22.0, 33.0, 11.0, 33.0]),
])
def test_resample_matches_core_mls_own_outputs(sampling, padding, coords_mode, align, value, want):
    got = run("resample", x=_CT_X, coordinates=_CT_COORDS, sampling_mode=sampling, padding_mode=padding,
              padding_value=value, coordinates_mode=coords_mode, align_corners=align)
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5)


def test_affine_matches_core_mls_own_outputs():
    m = np.array([[-1.0, -2.0, -3.7, -1.0, 3.5, 1.2]], np.float32)
    args = dict(x=_CT_X, transform_matrix=m, sampling_mode="bilinear", padding_mode="constant", padding_value=0.0,
                coordinates_mode="normalized_minus_one_to_one", align_corners=True)
    np.testing.assert_allclose(run("affine", output_height=3, output_width=3, **args).reshape(-1),
                               [10.752501, 2.5025, 0.0, 1.9799997, 0, 0, 0, 0, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run("affine", output_height=2, output_width=5, **args).reshape(-1),
                               [10.752501, 5.94, 2.5025, 0.44000006, 0, 0, 0, 0, 0, 0], rtol=1e-5, atol=1e-5)


def test_log_softmax_and_epsilon():
    x = rng.standard_normal((2, 5, 3)).astype(np.float32) * 4
    for axis in (1, -1):
        sm = run("softmax", x=x, axis=axis)
        want = torch.softmax(torch.from_numpy(x), axis).numpy()
        np.testing.assert_allclose(sm, want, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(run("log", x=sm, epsilon=np.float32(1e-45)),
                                   F.log_softmax(torch.from_numpy(x), axis).numpy(), atol=1e-5)
    assert run("log", x=np.zeros(1, np.float32)) == pytest.approx(np.log(np.float32(1e-45)))  # the MIL default
    np.testing.assert_allclose(run("log", x=np.array([0.0, 1.0], np.float32), epsilon=0.5), np.log([0.5, 1.5]),
                               rtol=1e-6)
    assert run("softmax", x=np.array([1000.0, 1000.0], np.float32)).tolist() == [0.5, 0.5]  # no overflow


# Real conversions: small torch models → ct.convert (mlprogram, iOS16) → .mlpackage → MILProgram.
MODES = [(m, p, a) for m in ("bilinear", "nearest") for p in ("zeros", "border", "reflection")
         for a in (True, False)]
# Bound for fp32 sampling: the evaluator computes each sampling position with torch's own fp32 formulas, so
# positions agree to ≲ 2 ulp (|p| ≤ 16 px here: 2·ulp(16) ≈ 4e-6 px); an output is a convex combination of
# taps, so a position error δ moves it by ≤ δ·max|Δx| ≤ 2δ·max|x| = 8e-6·max|x|, plus ≤ 4 roundings of
# the sum (5e-7·max|x|). Nearest is exact except at a rounding tie moved across by δ.
SAMPLE_BOUND = 1e-5
H, W = 5, 8


def _convert(model, inputs: dict[str, torch.Tensor], path, precision: str = "fp32"):
    import warnings

    import coremltools as ct
    from runtime.mil import MILProgram
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), tuple(inputs.values()))
        ml = ct.convert(traced, inputs=[ct.TensorType(name=k, shape=v.shape) for k, v in inputs.items()],
                        convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16)
    ml.save(str(path))
    return MILProgram(path)


class _Samplers(torch.nn.Module):
    """Every grid_sample mode × padding × align_corners on one grid, and affine_grid + grid_sample
    (zeros, bilinear) for both align_corners: one program, one conversion."""

    def forward(self, x, grid, theta):
        outs = [F.grid_sample(x, grid, mode=m, padding_mode=p, align_corners=a) for m, p, a in MODES]
        for a in (True, False):
            outs.append(F.grid_sample(x, F.affine_grid(theta, [2, 3, 4, 6], align_corners=a), align_corners=a))
        return tuple(outs)


def _sampler_feeds():
    g = np.random.default_rng(1)
    grid = g.uniform(-1.8, 1.8, (2, 6, 7, 2)).astype(np.float32)       # many points outside [-1, 1]
    # Exact half-pixel ties for nearest (torch rounds them to even): x with align_corners=False (W=8),
    # y with align_corners=True (H=5), in range and beyond it.
    grid[0, 0] = np.arange(-1.75, 1.5, 0.5)[:, None]
    grid[1, 0, :, 0] = [-1.0, 1.0, -1.25, 1.25, -0.75, 0.875, 2.0]      # edges, ties, beyond
    theta = np.array([[[0.9, -0.3, 0.2], [0.4, 1.1, -0.3]], [[1.4, 0.2, -0.5], [-0.1, 0.7, 0.6]]], np.float32)
    return {"x": g.standard_normal((2, 3, H, W)).astype(np.float32), "grid": grid, "theta": theta}


@pytest.fixture(scope="module")
def samplers(tmp_path_factory):
    feeds = _sampler_feeds()
    prog = _convert(_Samplers(), {k: torch.from_numpy(v) for k, v in feeds.items()},
                    tmp_path_factory.mktemp("mil") / "samplers.mlpackage")
    got = prog.run(feeds)
    return prog, feeds, [got[n] for n in prog.output_names]


def _grid_sample(feeds, mode, pad, align, shift_px=0.0):
    grid = feeds["grid"] + np.float32(shift_px * 2 / ((W - 1) if align else W)) * np.array([1, 0], np.float32)
    return F.grid_sample(torch.from_numpy(feeds["x"]), torch.from_numpy(grid.astype(np.float32)), mode=mode,
                         padding_mode=pad, align_corners=align).numpy()


def test_the_sampler_program_maps_torch_modes_to_resample_and_affine(samplers):
    prog, _, _ = samplers
    res = [(o.inputs["sampling_mode"].val, o.inputs["padding_mode"].val, bool(o.inputs["align_corners"].val))
           for o in prog.ops if o.op_type == "resample"]
    names = {"zeros": "constant", "border": "border"}
    assert sorted(res) == sorted((m, names.get(p, "reflection" if a else "symmetric"), a) for m, p, a in MODES)
    assert sorted(bool(o.inputs["align_corners"].val) for o in prog.ops if o.op_type == "affine") == [False, True]


@pytest.mark.parametrize("i", range(len(MODES)), ids=["-".join(map(str, m)) for m in MODES])
def test_resample_program_matches_grid_sample(samplers, i):
    _, feeds, outs = samplers
    mode, pad, align = MODES[i]
    bound = SAMPLE_BOUND * np.abs(feeds["x"]).max()
    assert np.abs(outs[i] - _grid_sample(feeds, mode, pad, align)).max() <= bound
    # A convention error fails it: a 1/20 px shift (bilinear), half a pixel (nearest).
    shifted = _grid_sample(feeds, mode, pad, align, shift_px=0.05 if mode == "bilinear" else 0.5)
    assert np.abs(outs[i] - shifted).max() > 100 * bound


@pytest.mark.parametrize("align", [True, False])
def test_affine_program_matches_affine_grid_grid_sample(samplers, align):
    _, feeds, outs = samplers
    x, theta = torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["theta"])
    got = outs[len(MODES) + (0 if align else 1)]

    def ref(shift):
        t = theta.clone()
        t[:, 0, 2] += shift
        return F.grid_sample(x, F.affine_grid(t, [2, 3, 4, 6], align_corners=align), align_corners=align).numpy()
    bound = SAMPLE_BOUND * np.abs(feeds["x"]).max()
    assert np.abs(got - ref(0.0)).max() <= bound
    assert np.abs(got - ref(0.05 * 2 / W)).max() > 100 * bound           # 1/20 px to the right fails


class _STNClassifier(torch.nn.Module):
    """A spatial transformer classifier: a localisation net predicts θ, affine_grid + grid_sample warp
    the image, a conv net classifies it (log_softmax)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.loc = nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(2, 2), nn.ReLU(), nn.Conv2d(4, 6, 3),
                                 nn.MaxPool2d(2, 2), nn.ReLU())
        self.fc_loc = nn.Sequential(nn.Linear(6 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 6))
        self.features = nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(2), nn.ReLU())
        self.fc = nn.Linear(4 * 10 * 10, 10)

    def forward(self, x):
        theta = self.fc_loc(self.loc(x).flatten(1)).view(-1, 2, 3)
        x = F.grid_sample(x, F.affine_grid(theta, x.size(), align_corners=False), align_corners=False)
        return F.log_softmax(self.fc(self.features(x).flatten(1)), dim=1)


STN_OPS = {"affine", "conv", "linear", "log", "max_pool", "relu", "reshape", "softmax"}


@pytest.fixture(scope="module")
def stn(tmp_path_factory):
    torch.manual_seed(0)
    model = _STNClassifier().eval()
    x = torch.randn(2, 1, 24, 24)
    out = tmp_path_factory.mktemp("mil")
    progs = {p: _convert(model, {"x": x}, out / f"stn-{p}.mlpackage", p) for p in ("fp32", "fp16")}
    return model, x, progs


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_stn_classifier_program_matches_pytorch(stn, precision):
    model, x, progs = stn
    prog = progs[precision]
    assert set(prog.op_types) - {"const", "cast"} == STN_OPS
    (got,) = prog.run({"x": x.numpy()}).values()
    with torch.no_grad():
        want, moved = model(x).numpy(), model(torch.roll(x, 1, dims=-1)).numpy()
    # fp32: the sums of conv/linear (≤ 400 terms) are accumulated in another order than torch's,
    # ≈ √400·6e-8 ≈ 1.2e-6 relative per layer, a few layers deep (measured 1.9e-7·max|y|). fp16: the
    # input and every tensor are stored in fp16 (unit roundoff 4.9e-4), ~10 roundoffs (measured 6.3e-4).
    bound = (1e-5 if precision == "fp32" else 5e-3) * np.abs(want).max()
    assert np.abs(got - want).max() <= bound
    assert np.abs(got - moved).max() > 10 * bound                         # the image one pixel over fails it
