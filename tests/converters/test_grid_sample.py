"""The general GridSample lowering (converters/grid_sample.py): every mode × padding ×
align_corners against ONNX Runtime's own GridSample, through onnx2tf to a GPU-clean TFLite, on
the GPU accelerator, and what it refuses."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters import ConversionError
from converters import grid_sample
from converters.gpu_check import check_gpu_compatibility
from converters.lowering import lower_gridsample
from runtime.runners import get_runner

COMBOS = list(itertools.product(("bilinear", "nearest"), ("zeros", "border", "reflection"), (0, 1)))
MAP = (2, 3, 5, 7)        # N, C, H, W: batch 2, non-square
GRID = (2, 4, 6, 2)       # N, Ho, Wo, 2
# fp32 bound, relative to the map's largest magnitude: every output is a combination of at most
# four map values with weights in [0, 1] summing to ≤ 1. The lowering and ONNX Runtime compute the
# pixel coordinate with the same formula, but the lowering's weights go through a few more fp32
# ops (reflection: ~10) on coordinates below 2·max(H, W) = 14, each off by ≤ ½ ulp(16) = 2⁻²⁰, so a
# weight is off by ≲ 10·2⁻²⁰ ≈ 1e-5 / 1 in the worst case and ≲ 3e-6 measured; the contraction adds
# ≤ 4 ulp of the result. Nearest mode agrees exactly (same rounding of the same fp32 coordinate).
RTOL = 1e-5


def _model(mode: str, pad: str, align: int, xs=MAP, gs=GRID, computed: bool = True) -> onnx.ModelProto:
    """One GridSample; with `computed` its grid is a tensor computed at run time (input × 1.25)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(xs))
    g = helper.make_tensor_value_info("grid", TensorProto.FLOAT, list(gs))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [xs[0], xs[1], gs[1], gs[2]])
    nodes, inits = [], []
    grid = "grid"
    if computed:
        inits.append(numpy_helper.from_array(np.array(1.25, np.float32), "scale"))
        nodes.append(helper.make_node("Mul", ["grid", "scale"], ["grid_scaled"], name="scale_grid"))
        grid = "grid_scaled"
    nodes.append(helper.make_node("GridSample", ["x", grid], ["y"], name="sampler", mode=mode,
                                  padding_mode=pad, align_corners=align))
    return helper.make_model(helper.make_graph(nodes, "g", [x, g], [y], inits),
                             opset_imports=[helper.make_opsetid("", 16)], ir_version=8)


def _grid(rng, align: int, gs=GRID, hw=MAP[2:], scale: float = 1.25) -> np.ndarray:
    """Random points, a third of them far outside the map, plus exact pixel centres and the map's
    edges (±1) in both coordinates (divided by `scale`, the graph's multiplier, which is exact)."""
    g = rng.uniform(-1.0, 1.0, gs).astype(np.float32)
    g[:, 0] *= 3.0                                              # out of range
    h, w = hw
    for axis, size in ((0, w), (1, h)):
        k = rng.integers(0, size, gs[2])
        centres = 2 * k / (size - 1) - 1 if align else (2 * k + 1) / size - 1
        g[:, 1, :, axis] = centres / scale                     # on pixel centres
        g[:, 2, :, axis] = np.where(np.arange(gs[2]) % 2, 1.0, -1.0) / scale   # on the edges
    return g.astype(np.float32)


def _ort(model: onnx.ModelProto, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x, "grid": g})[0]


def _within(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> bool:
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= RTOL * np.abs(x).max()))


def _case(rng, mode, pad, align):
    x = rng.standard_normal(MAP).astype(np.float32)
    return x, _grid(rng, align)


@pytest.mark.parametrize("mode,pad,align", COMBOS)
def test_lowering_equals_onnxruntime(mode, pad, align):
    model = _model(mode, pad, align)
    low = lower_gridsample(model)
    ops = {n.op_type for n in low.graph.node}
    assert "GridSample" not in ops and not ops & {"Gather", "GatherND", "GatherElements", "ScatterND"}
    rng = np.random.default_rng(7)
    for _ in range(3):
        x, g = _case(rng, mode, pad, align)
        want, got = _ort(model, x, g), _ort(low, x, g)
        assert _within(got, want, x), np.abs(got - want).max()
        if mode == "nearest":
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode,pad,align", [("bilinear", "reflection", 0), ("nearest", "border", 1)])
def test_the_bound_fails_when_shifted(mode, pad, align):
    model = _model(mode, pad, align)
    low = lower_gridsample(model)
    x, g = _case(np.random.default_rng(3), mode, pad, align)
    want, got = _ort(model, x, g), _ort(low, x, g)
    assert _within(got, want, x)
    shifted = got.copy()
    shifted.flat[5] += 2 * RTOL * np.abs(x).max()       # one element shifted by twice the bound
    assert not _within(shifted, want, x)
    # the grid moved by one pixel along x: a different answer, far outside the bound
    moved = g.copy()
    moved[..., 0] += 2 / MAP[3]
    assert not _within(_ort(low, x, moved), want, x)


def test_zoo_idiom_keeps_the_fast_path_and_others_do_not():
    """Bilinear/zeros/align_corners=1 with batch 1 and a grid stacked from x and y planes (the
    zoo's idiom) still goes to the fused gather lowering; the same sampler on a grid that is one
    run-time tensor (onnx2tf fails on the fused path's plane gathers) or with batch 2 goes to the
    general one (no gathers)."""
    one = _model("bilinear", "zeros", 1, xs=(1, 3, 5, 7), gs=(1, 4, 6, 2), computed=False)
    g = one.graph
    g.input[1].CopyFrom(helper.make_tensor_value_info("gx", TensorProto.FLOAT, [1, 4, 6]))
    g.input.append(helper.make_tensor_value_info("gy", TensorProto.FLOAT, [1, 4, 6]))
    g.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), "last"),
                          numpy_helper.from_array(np.array([1, 4, 6, 2], np.int64), "grid_shape")])
    sampler = list(g.node)
    del g.node[:]
    g.node.extend([helper.make_node("Unsqueeze", ["gx", "last"], ["ux"]),
                   helper.make_node("Unsqueeze", ["gy", "last"], ["uy"]),
                   helper.make_node("Concat", ["ux", "uy"], ["stacked"], axis=-1),
                   helper.make_node("Reshape", ["stacked", "grid_shape"], ["grid"])] + sampler)  # as torch.stack exports
    fused = lower_gridsample(one)
    assert any(n.op_type == "Gather" for n in fused.graph.node)
    raw = lower_gridsample(_model("bilinear", "zeros", 1, xs=(1, 3, 5, 7), gs=(1, 4, 6, 2)))
    assert not any(n.op_type == "Gather" for n in raw.graph.node)
    two = lower_gridsample(_model("bilinear", "zeros", 1))
    assert not any(n.op_type == "Gather" for n in two.graph.node)


def test_unsupported_mode_is_a_typed_error_naming_the_node():
    model = _model("bilinear", "zeros", 0)
    for a in model.graph.node[-1].attribute:
        if a.name == "mode":
            a.s = b"bicubic"
    with pytest.raises(ConversionError, match="sampler.*bicubic"):
        lower_gridsample(model)


def test_dynamic_dimension_is_a_typed_error_naming_tensor_and_dimension():
    model = _model("nearest", "border", 0, computed=False)
    model.graph.input[1].type.tensor_type.shape.dim[1].dim_param = "rows"
    with pytest.raises(ConversionError, match="'grid' has a dynamic dimension 1"):
        lower_gridsample(model)


def test_too_large_is_refused_with_the_numbers():
    with pytest.raises(ConversionError, match=r"N·P·C·H = 2·65536·64·64"):
        lower_gridsample(_model("bilinear", "border", 0, xs=(2, 64, 64, 64), gs=(2, 256, 256, 2)))
    with pytest.raises(ConversionError, match=r"N·P·W = 1·65536·4224"):
        lower_gridsample(_model("bilinear", "border", 0, xs=(1, 1, 2, 4100), gs=(1, 256, 256, 2)))
    with pytest.raises(ConversionError, match=r"exceeds 4194304 = 2048²"):
        lower_gridsample(_model("bilinear", "border", 0, xs=(1, 1, 2, 2 ** 22 + 1), gs=(1, 1, 1, 2)))


# -- through onnx2tf, as the build converts ---------------------------------------------------------

def _tflite(model: onnx.ModelProto, tmp_path) -> bytes:
    from converters.onnx_tflite import run_onnx2tf
    from converters.tflite_passes import pipeline
    path = tmp_path / "sampler.onnx"
    onnx.save(lower_gridsample(model), str(path))
    raw = (run_onnx2tf(path, tmp_path, "x") / "sampler_float32.tflite").read_bytes()
    for tflite_pass in pipeline():
        raw, _ = tflite_pass(raw)
    return raw


def _run_tflite(runner_name: str, raw: bytes, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """onnx2tf made both rank-4 inputs channels-last (x → NHWC, the grid (N,Ho,Wo,2) → (N,Wo,2,Ho))
    and left the output (N,C,Ho,Wo) as it is."""
    with get_runner(runner_name)(None, raw) as runner:
        runner.load()
        names = {n.split("serving_default_")[-1].split(":")[0]: n for n in runner.input_names}
        out = runner.run_native({names["x"]: np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
                                 names["grid"]: np.ascontiguousarray(g.transpose(0, 2, 3, 1))})
    (y,) = out.values()
    return y


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cases = [("bilinear", "reflection", 0), ("nearest", "zeros", 1), ("bilinear", "border", 1)]
    return {c: (_model(*c, computed=False), _tflite(_model(*c, computed=False), tmp_path_factory.mktemp("tfl")))
            for c in cases}


def test_tflite_is_gpu_clean_and_matches_onnxruntime(converted):
    rng = np.random.default_rng(11)
    for (mode, pad, align), (model, raw) in converted.items():
        report = check_gpu_compatibility(raw)
        assert report.ok, report.summary()
        x, g = _case(rng, mode, pad, align)
        want = _ort(model, x, g)
        got = _run_tflite("tflite", raw, x, g)
        assert _within(got, want, x), (mode, pad, align, np.abs(got - want).max())


@pytest.mark.skipif(not get_runner("tflite-gpu-f32").is_available().ok,
                    reason="LiteRT's GPU accelerator is unavailable here (no Vulkan adapter)")
def test_on_the_gpu_accelerator(converted):
    """On the GPU alone: fp32 arithmetic within the fp32 bound; the default fp16 arithmetic within
    fp16's: weights carry ≤ 2⁻¹¹ relative error from coordinates below 16, four taps → 4·2⁻⁸ of the
    map's scale (fp16 has 11 significant bits; the coordinate loses 4 of them to its integer part)."""
    rng = np.random.default_rng(5)
    mode, pad, align = "bilinear", "reflection", 0
    model, raw = converted[(mode, pad, align)]
    x, g = _case(rng, mode, pad, align)
    want = _ort(model, x, g)
    got = _run_tflite("tflite-gpu-f32", raw, x, g)
    assert _within(got, want, x), np.abs(got - want).max()
    half = _run_tflite("tflite-gpu", raw, x, g)
    assert np.abs(half - want).max() <= 4 * 2 ** -8 * np.abs(x).max()


@pytest.mark.parametrize("pad", ["zeros", "reflection"])
def test_nearest_rounds_ties_half_to_even(pad):
    """Points exactly half way between pixel centres (a width of 8 and align_corners=0 make
    g = (2k+2)/8 − 1 land on k + ½ exactly): each goes to the even neighbour, as in ONNX Runtime."""
    xs, gs = (2, 3, 4, 8), (2, 3, 9, 2)
    model = _model("nearest", pad, 0, xs=xs, gs=gs, computed=False)
    k = np.arange(-1, 8, dtype=np.float32)
    g = np.zeros(gs, np.float32)
    g[..., 0] = (2 * k + 2) / 8 - 1
    g[..., 1] = np.array([-1.0, 0.0, 0.5], np.float32)[None, :, None]
    ux = ((g[..., 0] + 1) * 8 - 1) / 2
    assert np.all(ux - np.floor(ux) == 0.5)          # every x coordinate is a tie
    x = np.random.default_rng(2).standard_normal(xs).astype(np.float32)
    np.testing.assert_array_equal(_ort(lower_gridsample(model), x, g), _ort(model, x, g))


# -- axes over 2048 pixels: the split lowering ------------------------------------------------------

WIDE, WIDE_GRID = (1, 3, 3, 4100), (1, 5, 40, 2)     # wider than 2048 (blocks of 128; not a whole block)
TALL, TALL_GRID = (2, 2, 2500, 3), (2, 4, 30, 2)     # taller than 2048, batch 2


@pytest.mark.parametrize("xs,gs", [(WIDE, WIDE_GRID), (TALL, TALL_GRID)], ids=["wide", "tall"])
@pytest.mark.parametrize("mode,pad,align", COMBOS)
def test_split_axis_equals_onnxruntime(xs, gs, mode, pad, align):
    """The same fp32 bound as the small maps. It holds only because the split axis follows ONNX
    Runtime's arithmetic: with the small maps' formulas a 4100-pixel axis is off by up to 7e-4
    (align_corners=0: another rounding of coordinates ~4100, whose fp32 spacing is 2⁻¹¹)."""
    model = _model(mode, pad, align, xs=xs, gs=gs)
    low = lower_gridsample(model)
    ops = {n.op_type for n in low.graph.node}
    assert "GridSample" not in ops and not ops & {"Gather", "GatherND", "GatherElements", "ScatterND"}
    assert "Slice" in ops                               # the split axis (padded to whole blocks) is there
    rng = np.random.default_rng(17)
    for _ in range(2):
        x = rng.standard_normal(xs).astype(np.float32)
        g = _grid(rng, align, gs=gs, hw=xs[2:])
        want, got = _ort(model, x, g), _ort(low, x, g)
        assert _within(got, want, x), np.abs(got - want).max()
        if mode == "nearest":
            np.testing.assert_array_equal(got, want)


def test_small_maps_are_not_split():
    """Up to 2048 pixels an axis is lowered exactly as before (no block one-hots, no slice)."""
    for xs in [MAP, (1, 1, 2048, 2048)]:
        low = lower_gridsample(_model("bilinear", "reflection", 0, xs=xs, gs=(xs[0], 2, 3, 2)))
        assert not {"Slice", "Neg"} & {n.op_type for n in low.graph.node}


def _evaluate(model: onnx.ModelProto, feeds: dict, dtype) -> np.ndarray:
    """The graph evaluated op by op in NumPy, every float tensor (inputs, constants, results) stored
    as `dtype` and every op computed in fp32 from those: how the GPU delegate's default fp16
    arithmetic runs it (each product sum here has at most three non-zero terms)."""
    from onnx import numpy_helper as nh

    def stored(a):
        a = np.asarray(a)
        return a.astype(dtype) if a.dtype.kind == "f" else a

    env = {i.name: stored(nh.to_array(i)) for i in model.graph.initializer}
    env.update({k: stored(v) for k, v in feeds.items()})
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Min": np.minimum, "Max": np.maximum,
              "MatMul": np.matmul}
    unary = {"Abs": np.abs, "Floor": np.floor, "Neg": np.negative, "Relu": lambda a: np.maximum(a, 0)}
    for n in model.graph.node:
        a = [env[i] for i in n.input]
        attrs = {t.name: helper.get_attribute_value(t) for t in n.attribute}
        f32 = [v.astype(np.float32) if v.dtype.kind == "f" else v for v in a]
        if n.op_type in binary:
            y = binary[n.op_type](f32[0], f32[1])
        elif n.op_type in unary:
            y = unary[n.op_type](f32[0])
        elif n.op_type == "Reshape":
            y = a[0].reshape(a[1])
        elif n.op_type == "Transpose":
            y = a[0].transpose(attrs["perm"])
        elif n.op_type == "ReduceSum":
            y = f32[0].sum(axis=tuple(a[1]), keepdims=bool(attrs.get("keepdims", 1)))
        elif n.op_type == "Slice":
            index = [slice(None)] * a[0].ndim
            for start, end, axis in zip(a[1], a[2], a[3]):
                index[axis] = slice(start, end)
            y = a[0][tuple(index)]
        else:
            raise NotImplementedError(n.op_type)
        with np.errstate(over="ignore"):      # the nearest tie test overflows to inf on purpose
            env[n.output[0]] = stored(y)
    return env[model.graph.output[0].name].astype(np.float32)


PIXELS = [5, 1500, 2047, 2052, 3000, 4000, 4096, 2500, 4100, -4, 3002, 2048]   # x of each sample


def _pixel_grid(ks=PIXELS, size: int = 4097, rows: int = 1) -> np.ndarray:
    """A grid (1, rows, len(ks), 2) whose x coordinates land exactly on pixels k (align_corners=1,
    W − 1 = 4096, so x = (g + 1)·2048: every g and g + 1 here is an fp16 number) and whose y
    alternate between the map's two rows."""
    ks = np.asarray(ks, np.float64)
    g = np.zeros((1, rows, len(ks), 2), np.float32)
    g[..., 0] = ks * 2 / (size - 1) - 1
    g[..., 1] = np.where(np.arange(len(ks)) % 2, 1.0, -1.0)
    assert np.array_equal(g.astype(np.float16).astype(np.float32), g)
    x16 = (g[..., 0].astype(np.float16) + np.float16(1)) * np.float16((size - 1) / 2)
    assert np.array_equal(x16.astype(np.float64), np.broadcast_to(ks, x16.shape))
    return g


@pytest.mark.parametrize("mode,pad", list(itertools.product(("bilinear", "nearest"), ("zeros", "border",
                                                                                      "reflection"))))
def test_split_is_exact_in_fp16_where_the_unsplit_ramp_is_not(mode, pad, monkeypatch):
    """fp16 (the GPU delegate's default) spaces its numbers 2 apart from 2048 on: an unsplit ramp
    j = 0…4096 stores 2999, 3000 and 3001 all as 3000, so a sample on pixel 3000 gets three pixels.
    Evaluated in fp16 op by op, the split lowering reads exactly the pixel of each exactly
    representable coordinate — on the map (k ≡ 0 mod 4 above 2048 among them), on its last pixel
    and past both edges (each padding rule) — and the unsplit one does not."""
    xs = (1, 2, 2, 4097)
    model = _model(mode, pad, 1, xs=xs, gs=(1, 1, 12, 2), computed=False)
    ks = PIXELS
    g = _pixel_grid()
    x = np.random.default_rng(4).standard_normal(xs).astype(np.float16).astype(np.float32)
    want = _ort(model, x, g)                                      # fp32, on the fp16-exact inputs
    split = _evaluate(lower_gridsample(model), {"x": x, "grid": g}, np.float16)
    np.testing.assert_array_equal(split, want)
    np.testing.assert_array_equal(_evaluate(lower_gridsample(model), {"x": x, "grid": g}, np.float32), want)
    monkeypatch.setattr(grid_sample, "FP16_EXACT", 1 << 20)       # the small maps' unsplit lowering
    unsplit = _evaluate(lower_gridsample(model), {"x": x, "grid": g}, np.float16)
    on_map_triple = [i for i, k in enumerate(ks) if 2048 < k < 4096 and k % 4 == 0]
    err = np.abs(unsplit - want)[..., on_map_triple]
    assert err.max() > 0.5 * np.abs(x).max()
    row = np.arange(len(ks)) % 2                                  # the sampled row per point
    for i in on_map_triple:
        k = ks[i]
        np.testing.assert_allclose(unsplit[0, :, 0, i], x[0, :, row[i], k - 1:k + 2].sum(axis=1), atol=2e-2)


@pytest.fixture(scope="module")
def converted_wide(tmp_path_factory):
    model = _model("bilinear", "border", 1, xs=(1, 2, 2, 4097), gs=(1, 3, 12, 2), computed=False)
    return model, _tflite(model, tmp_path_factory.mktemp("wide"))


def test_split_tflite_is_gpu_clean_and_matches_onnxruntime(converted_wide):
    model, raw = converted_wide
    report = check_gpu_compatibility(raw)
    assert report.ok, report.summary()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 2, 4097)).astype(np.float32)
    g = _grid(rng, 1, gs=(1, 3, 12, 2), hw=(2, 4097))
    got, want = _run_tflite("tflite", raw, x, g), _ort(model, x, g)
    assert _within(got, want, x), np.abs(got - want).max()


@pytest.mark.skipif(not get_runner("tflite-gpu").is_available().ok,
                    reason="LiteRT's GPU accelerator is unavailable here (no Vulkan adapter)")
def test_split_on_the_gpu_accelerator_in_fp16(converted_wide):
    """The delegate's own fp16 arithmetic reads exactly the pixel of every exactly representable
    coordinate of a 4097-pixel axis (the emulation above, on the real thing)."""
    model, raw = converted_wide
    g = _pixel_grid(rows=3)
    x = np.random.default_rng(4).standard_normal((1, 2, 2, 4097)).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(_run_tflite("tflite-gpu", raw, x, g), _ort(model, x, g))
