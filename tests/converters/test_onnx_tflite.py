"""ONNX → TFLite that stays on the GPU delegate: the GridSample lowering and the real model."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

import modelzoo
from converters import ConversionError
from converters.onnx_tflite import onnx_to_tflite
from converters.torch_onnx import torch_to_onnx
from converters.build import build
from converters.gpu_check import check_gpu_compatibility
from runtime.litert_gpu import availability
from converters.lowering import lower_gridsample
from converters.onnx_tflite import nhwc, run_native
from converters.tflite_passes import SIGNATURE_KEY, op_histogram

IOD = (33, 263)


def gridsample_model(c: int, h_in: int, w_in: int, h: int, w: int, mode: str = "bilinear") -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h_in, w_in])
    g = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, h, w, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, w])
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs", mode=mode, padding_mode="zeros",
                            align_corners=1)
    m = helper.make_model(helper.make_graph([node], "g", [x, g], [y]), opset_imports=[helper.make_opsetid("", 16)])
    m.ir_version = 8
    return m


def stacked_grid(m: onnx.ModelProto) -> onnx.ModelProto:
    """`m` with its grid input stacked from x and y planes `gx`, `gy` (1, h, w), as torch.stack
    exports it: the fused lowering's idiom (a grid that is one run-time tensor takes the general one)."""
    g = m.graph
    _, h, w, _ = [d.dim_value for d in g.input[1].type.tensor_type.shape.dim]
    g.input[1].CopyFrom(helper.make_tensor_value_info("gx", TensorProto.FLOAT, [1, h, w]))
    g.input.append(helper.make_tensor_value_info("gy", TensorProto.FLOAT, [1, h, w]))
    g.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), "last"),
                          numpy_helper.from_array(np.array([1, h, w, 2], np.int64), "grid_shape")])
    sampler = list(g.node)
    del g.node[:]
    g.node.extend([helper.make_node("Unsqueeze", ["gx", "last"], ["ux"]),
                   helper.make_node("Unsqueeze", ["gy", "last"], ["uy"]),
                   helper.make_node("Concat", ["ux", "uy"], ["stacked"], axis=-1),
                   helper.make_node("Reshape", ["stacked", "grid_shape"], ["grid"])] + sampler)
    return m


@pytest.mark.parametrize("size", [(12, 20), (48, 48), (64, 64), (7, 5)])
def test_lowering_equals_gridsample(size):
    """Two tables, the map's even and odd rows (⌈H/2⌉·W ≤ 2048 pixels each: fp16-exact indices)."""
    h_in, w_in = size
    m = stacked_grid(gridsample_model(5, h_in, w_in, 16, 16))
    rng = np.random.default_rng(0)
    grid = rng.uniform(-1.3, 1.3, (1, 16, 16, 2)).astype(np.float32)  # some samples outside
    grid[0, 0, :4] = [[-1, -1], [1, 1], [1, -1], [-1, 1]]               # exact corners
    feeds = {"x": rng.standard_normal((1, 5, h_in, w_in)).astype(np.float32),
             "gx": np.ascontiguousarray(grid[..., 0]), "gy": np.ascontiguousarray(grid[..., 1])}
    ref = ort.InferenceSession(m.SerializeToString()).run(None, feeds)[0]
    low = lower_gridsample(m)
    assert "GridSample" not in {n.op_type for n in low.graph.node}
    got = ort.InferenceSession(low.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    flat_sizes = [numpy_helper.to_array(i).tolist() for i in low.graph.initializer if i.dims == [2]]
    assert [(h_in + 1) // 2 * w_in, 5] in flat_sizes and [h_in // 2 * w_in, 5] in flat_sizes


def test_lowering_covers_nearest_and_refuses_what_it_does_not_cover():
    m = gridsample_model(2, 8, 8, 4, 4, mode="nearest")        # not the zoo's idiom: the general lowering
    low = lower_gridsample(m)
    assert "GridSample" not in {n.op_type for n in low.graph.node}
    rng = np.random.default_rng(0)
    feed = {"x": rng.random((1, 2, 8, 8), dtype=np.float32),
            "grid": rng.uniform(-1.2, 1.2, (1, 4, 4, 2)).astype(np.float32)}
    want = ort.InferenceSession(m.SerializeToString()).run(None, feed)[0]
    got = ort.InferenceSession(low.SerializeToString()).run(None, feed)[0]
    np.testing.assert_array_equal(got, want)                    # nearest picks pixels: exact
    with pytest.raises(ConversionError, match="gs"):
        lower_gridsample(gridsample_model(2, 8, 8, 4, 4, mode="cubic"))


@pytest.mark.parametrize("model_id", ["attention_mesh", "attention_mesh_paper"])
def test_lowered_real_models_match_their_onnx(model_id, tmp_path):
    spec = modelzoo.get_spec(model_id)
    art = torch_to_onnx(modelzoo.load_model(model_id), spec, tmp_path / "m.onnx")
    from onnxsim import simplify
    from converters.lowering import sum_residual_adds
    proto, _ = simplify(onnx.load(str(art.path)))
    low, sums = sum_residual_adds(lower_gridsample(proto))
    # Every residual add becomes Sum, in the backbone and in the region heads after the samplers;
    # the samplers go together (one MatMul grid for the three crops) with the in-bounds masks folded.
    ops = [n.op_type for n in low.graph.node]
    assert sums == ops.count("Sum") and any("/lips/" in n.name for n in low.graph.node if n.op_type == "Sum")
    assert "Add" not in {n.op_type for n in low.graph.node if "/trunk/" in n.name}
    assert "GridSample" not in ops and ops.count("MatMul") >= 1
    # Its constants stay under 1024 weights (chunked: 24×24 crops need two), which int8
    # dynamic-range quantisation leaves in float: the GPU delegate has no hybrid FULLY_CONNECTED.
    consts = {i.name: i for i in low.graph.initializer}
    assert all(np.prod(consts[n.input[1]].dims) < 1024 for n in low.graph.node if n.op_type == "MatMul")
    a = ort.InferenceSession(str(art.path))
    b = ort.InferenceSession(low.SerializeToString())
    n = spec.inputs[0].shape[-1]
    for seed in range(2):
        x = np.random.default_rng(seed).random((1, 3, n, n)).astype(np.float32)
        for p, q in zip(a.run(None, {"image": x}), b.run(None, {"image": x})):
            assert np.abs(p - q).max() < 1e-4


@pytest.fixture(scope="module")
def built(full_build):
    return full_build


@pytest.mark.slow
def test_tflite_artifacts_are_gpu_clean(built):
    root, res = built
    record = json.loads((root / "build.json").read_text())
    tfl = [a for a in record["artifacts"] if a["format"] == "tflite"]
    assert {a["precision"] for a in tfl} == {"fp32", "fp16", "int8"}
    for a in tfl:
        data = (root / a["path"]).read_bytes()
        report = check_gpu_compatibility(data)
        assert report.ok and report.flagged == [], report.summary()
        ops = op_histogram(data)
        assert not {"CUSTOM", "FlexDelegate", "LESS", "SELECT", "SELECT_V2", "GATHER_ND"} & set(ops), ops
        assert a["gather_guards_removed"] == 4         # 3 crops sampled together: 4 corners
        # Backbone and heads in onnx2tf's NHWC without a transpose: every PReLU native again, every
        # residual Sum an ADD, the lowering's identity convs (one per crop) gone.
        assert a["prelu_refused"] == 66 and ops["PRELU"] == 73 and a["add_n_as_add"] == 66
        assert a["identity_convs_removed"] == 3 and not {"TRANSPOSE", "ADD_N"} & set(ops)
        assert a["hybrid_fc_made_float"] == 0          # its one FULLY_CONNECTED (256×3) is too small to quantise
        assert ops["DEPTHWISE_CONV_2D"] == 66
        assert a["gpu_check"]["ok"] is True
        assert a["inputs"][0]["layout"] == "NHWC" and a["inputs"][0]["shape"] == [1, 192, 192, 3]
        dynamic = a["gpu_check"]["dynamic"]
        if availability()[0] is not None:   # compiled GPU-only and gated in both arithmetics
            assert a["gpu_check"]["checks"] == ["static", "dynamic"] and dynamic["ok"] is True
            assert set(dynamic["enforce_f32"]) == set(dynamic["fp16"]) == {"seeded", "sample_face"}
            assert dynamic["enforce_f32"]["sample_face"]["landmarks"]["max_px"] <= (
                1e-3 if a["precision"] != "int8" else 5.0)
        else:
            assert a["gpu_check"]["checks"] == ["static"] and dynamic == {"ran": False, "reason": availability()[1]}


@pytest.mark.slow
def test_tflite_matches_pytorch_on_real_faces(built, attention_mesh, golden_batch):
    root, _ = built
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in attention_mesh(golden_batch).items()}
    bound = {"fp32": 0.05, "fp16": 0.05, "int8": 1.0}   # mean % of inter-ocular distance (DESIGN §5)
    for precision in ("fp32", "fp16", "int8"):
        data = (root / f"attention_mesh-{precision}.tflite").read_bytes()
        it = Interpreter(model_content=data, num_threads=1)
        assert list(it.get_signature_list()) == [SIGNATURE_KEY]
        for i in range(len(golden_batch)):
            x = nhwc(golden_batch[i:i + 1].numpy())
            got = run_native(data, x)
            lm, want = got["landmarks"][0], ref["landmarks"][i]
            assert set(got) == {o.name for o in modelzoo.get_spec("attention_mesh").outputs}
            if i == 0:      # the serving signature runs the same graph under the spec names
                served = it.get_signature_runner(SIGNATURE_KEY)(image=x)
                assert served.keys() == got.keys() and all(np.array_equal(served[k], got[k]) for k in got)
            if precision == "fp32":
                assert np.abs(lm - want).max() <= 1e-3
            iod = np.linalg.norm(want[IOD[0], :2] - want[IOD[1], :2])
            assert 100 * np.linalg.norm(lm[:, :2] - want[:, :2], axis=-1).mean() / iod <= bound[precision]
            assert abs(got["face_flag"][0, 0] - ref["face_flag"][i, 0]) <= (1e-4 if precision != "int8" else 1e-2)


@pytest.mark.slow
def test_int8_records_its_calibrated_attempt(built):
    root, _ = built
    record = json.loads((root / "build.json").read_text())
    (art,) = [a for a in record["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"]
    assert art["variant"] in ("integer_quant", "dynamic_range_quant")
    if art["variant"] == "dynamic_range_quant":  # the calibrated variant was tried and why it lost is said
        assert art["rejected_variants"][0]["variant"] == "integer_quant" and art["rejected_variants"][0]["reason"]


@pytest.mark.slow
def test_no_change_rebuild_is_fast(built):
    root, _ = built
    res = build("attention_mesh", root.parent)
    assert res.built == [] and len(res.skipped) == 6


def test_corrupt_onnx_input_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    spec = modelzoo.get_spec("attention_mesh_paper")
    with pytest.raises(ConversionError, match="not a valid ONNX model"):
        onnx_to_tflite(bad, modelzoo.load_model("attention_mesh_paper"), spec,
                                 {"fp32": tmp_path / "out" / "m.tflite"})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unsupported_precision_is_refused(tmp_path):
    spec = modelzoo.get_spec("attention_mesh_paper")
    with pytest.raises(ConversionError, match="unsupported TFLite precision"):
        onnx_to_tflite(tmp_path / "x.onnx", modelzoo.load_model("attention_mesh_paper"), spec,
                                 {"int4": tmp_path / "m.tflite"})


@pytest.mark.parametrize("data, match", [
    (b"garbage" * 10, "not a TFLite flatbuffer"),
    (None, "not a readable TFLite model"),
])
def test_corrupt_tflite_input_to_a_pass_is_refused(data, match):
    from modelzoo.fetch import fetch
    from converters.tflite_passes import strip_gather_guards
    if data is None:
        whole = fetch("face_landmark.tflite").read_bytes()
        data = whole[: len(whole) // 7]
    with pytest.raises(ConversionError, match=match):
        strip_gather_guards(data)
