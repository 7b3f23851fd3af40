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
    with pytest.raises(UnsupportedMILOpError, match="nearest"):
        run("resample", x=np.zeros((1, 1, 2, 2)), coordinates=np.zeros((1, 1, 1, 2)), sampling_mode="nearest")


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


TESTED_OPS = {"add", "linear", "matmul", "relu", "sub", "mul", "real_div", "maximum", "inverse", "clip", "floor", "sqrt", "sigmoid", "prelu",
              "leaky_relu", "cast", "reshape", "transpose", "concat", "stack", "gather", "slice_by_index",
              "reduce_min", "reduce_max", "reduce_mean", "reduce_sum", "pad", "conv", "max_pool", "resample"}


@pytest.mark.slow
def test_every_op_of_our_programs_has_a_unit_test(full_build):
    from runtime.mil import MILProgram
    root, _ = full_build
    for precision in ("fp32", "fp16"):
        ops = set(MILProgram(root / f"attention_mesh-{precision}.mlpackage").op_types) - {"const"}
        assert ops <= TESTED_OPS, ops - TESTED_OPS


@pytest.mark.slow
def test_every_op_of_the_detector_programs_has_a_unit_test(detector_build):
    from runtime.mil import MILProgram
    for precision in ("fp32", "fp16"):
        ops = set(MILProgram(detector_build / f"face_detector-{precision}.mlpackage").op_types) - {"const"}
        assert ops <= TESTED_OPS, ops - TESTED_OPS
