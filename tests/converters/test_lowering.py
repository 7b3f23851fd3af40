"""The GridSample lowering on tiny graphs: the model idioms it folds (affine grid, MediaPipe's
in-bounds mask), several samplers lowered together, and what it refuses."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from converters import ConversionError
from converters.lowering import lower_gridsample, sum_residual_adds
from modelzoo.layers import BlazeBlock, sample_crop


class TwoCrops(torch.nn.Module):
    """A map, two crops of it through matrices computed from the input, a block on each crop —
    the attention mesh's sampler idioms (sample_crop: affine grid, in-bounds mask)."""

    def __init__(self, crop: int = 6):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.mats = torch.nn.Conv2d(8, 12, 10)
        self.heads = torch.nn.ModuleList([BlazeBlock(8, 8), BlazeBlock(8, 8)])
        self.crop = crop

    def forward(self, x):
        f = self.stem(x)                                                    # (1, 8, 10, 10)
        m = self.mats(f).reshape(2, 6) * 2.0 + torch.tensor([1.5, 0.2, 0.0, -0.2, 1.5, 1.0])
        return tuple(self.heads[i](sample_crop(f, m[i:i + 1], (self.crop, self.crop))).reshape(1, -1)
                     for i in range(2))


@pytest.fixture(scope="module")
def two_crops(tmp_path_factory):
    path = tmp_path_factory.mktemp("lowering") / "two_crops.onnx"
    with torch.no_grad():
        torch.onnx.export(TwoCrops().eval(), (torch.rand(1, 3, 20, 20),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["a", "b"])
    from onnxsim import simplify
    model, ok = simplify(onnx.load(str(path)))
    assert ok
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"image": x})


def test_model_idioms_are_folded_and_outputs_kept(two_crops):
    low = lower_gridsample(two_crops)
    ops = [n.op_type for n in low.graph.node]
    assert "GridSample" not in ops
    # The grid, affine in each crop matrix, became one MatMul; the mask Mul after each sampler
    # (and the model's floor/clip masks, 4 Floors each) went into the weights: the lowering's
    # 3 Floors (neighbours, parity pairs, in-bounds rule) are all that is left, for both.
    assert ops.count("MatMul") == 1 and ops.count("Floor") == 3
    assert ops.count("Floor") < [n.op_type for n in two_crops.graph.node].count("Floor")
    # Both samplers read the map together: 4 corner GATHERs with runtime indices, not 4 each.
    runtime = {n.output[0] for n in low.graph.node if n.op_type == "Cast"}
    assert sum(n.op_type == "Gather" and n.input[1] in runtime for n in low.graph.node) == 4
    rng = np.random.default_rng(0)
    for _ in range(3):                       # crops partly outside the map: the mask matters
        x = rng.random((1, 3, 20, 20)).astype(np.float32)
        for p, q in zip(_run(two_crops, x), _run(low, x)):
            np.testing.assert_allclose(q, p, atol=1e-4)


def test_heads_after_the_samplers_get_sums_too(two_crops):
    low, n = sum_residual_adds(lower_gridsample(two_crops))
    assert n == 2 and [x.op_type for x in low.graph.node].count("Sum") == 2
    x = np.random.default_rng(1).random((1, 3, 20, 20)).astype(np.float32)
    for p, q in zip(_run(two_crops, x), _run(low, x)):
        np.testing.assert_allclose(q, p, atol=1e-4)


def test_crops_leave_as_channels_last_then_identity_conv(two_crops):
    low = lower_gridsample(two_crops)
    producer = {o: n for n in low.graph.node for o in n.output}
    ends = [n for n in low.graph.node if n.name.endswith("/lowered_gridsample_out")]
    assert len(ends) == 2
    for conv in ends:
        assert conv.op_type == "Conv" and producer[conv.input[0]].op_type == "Transpose"
        perm = helper.get_attribute_value(next(a for a in producer[conv.input[0]].attribute if a.name == "perm"))
        assert list(perm) == [0, 3, 1, 2]


def _single_sampler(h: int, w: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, h, w])
    g = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 4, 4, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs", align_corners=1)
    return helper.make_model(helper.make_graph([node], "g", [x, g], [y]), opset_imports=[helper.make_opsetid("", 16)],
                             ir_version=8)


def test_maps_beyond_fp16_exact_gather_indices_take_the_general_lowering():
    m = _single_sampler(66, 64)                                   # 33·64 > 2048: not the gather lowering
    low = lower_gridsample(m)
    assert not any(n.op_type in ("Gather", "GridSample") for n in low.graph.node)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 66, 64)).astype(np.float32)
    g = rng.uniform(-1.2, 1.2, (1, 4, 4, 2)).astype(np.float32)
    want, got = (ort.InferenceSession(p.SerializeToString()).run(None, {"x": x, "grid": g})[0] for p in (m, low))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(x).max())


def test_axes_beyond_fp16_exact_indices_are_split_and_beyond_2048_squared_refused():
    low = lower_gridsample(_single_sampler(4, 2050))             # 2050 > 2048: the split general lowering
    assert not any(n.op_type in ("Gather", "GridSample") for n in low.graph.node)
    with pytest.raises(ConversionError, match="fp16-exact"):
        lower_gridsample(_single_sampler(4, 2 ** 22 + 1))        # more blocks than fp16 counts exactly
