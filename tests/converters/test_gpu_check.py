"""The static GPU-delegate checker on tiny TFLite models (known bad, known good) and on MediaPipe's files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.gpu_check import (RULES, Flag, GpuCompatibilityError, GpuReport, check_gpu_compatibility,
                                  require_gpu_compatible)
from modelzoo.errors import MeshportError
from modelzoo.fetch import fetch

ROOT = Path(__file__).resolve().parents[2]


def _build_models() -> dict[str, bytes]:
    """Every tiny model of this file, converted in one go (importing TensorFlow is the slow part)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    S, f32, i32 = tf.TensorSpec, tf.float32, tf.int32
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(3, 3, 3, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(size=(1, 1, 3, 8)).astype(np.float32))
    neg_alpha = tf.constant(np.full((1, 1, 8), -0.25, np.float32))
    table = tf.constant(rng.normal(size=(10, 4)).astype(np.float32))
    parity = tf.constant(np.array([[1.0], [0.0]], np.float32))
    rows = tf.constant(np.arange(16, dtype=np.float32).reshape(2, 8))
    rows3 = tf.constant(np.arange(64, dtype=np.float32).reshape(2, 4, 8))
    row = tf.constant(np.arange(16, dtype=np.float32).reshape(1, 16))

    def conv_prelu_add_reshape_concat(x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        y = tf.nn.relu(y) + tf.nn.relu(-y) * neg_alpha           # the converter fuses this into PRELU
        r = tf.nn.relu(tf.nn.conv2d(x, w2, 1, "SAME"))           # CONV_2D with fused RELU
        return tf.concat([tf.reshape(r + y, [1, 16, 4, 8]), tf.reshape(r, [1, 16, 4, 8])], axis=3)

    def gpu_clean_sampler(feat, pos):
        # index math in float, CAST float32->int32 right before a 1-D GATHER; masks as CAST(compare) to float
        idx = tf.cast(tf.floor(pos), tf.int32)
        mask = tf.cast(pos < 47.0, tf.float32)
        return tf.gather(feat, idx, axis=0) * tf.reshape(mask, [16, 1])

    def onnx2tf_guard(x, i):
        return tf.gather(x, i + tf.cast(i < 0, tf.int32) * 10)   # what onnx2tf emits for runtime indices

    specs = {
        # known bad
        "gather_2d_indices": (lambda x, i: tf.gather(x, i), S([10, 4], f32), S([2, 3], i32)),
        "gather_batch_dims": (lambda x, i: tf.gather(x, i, axis=1, batch_dims=1), S([1, 48, 4], f32),
                              S([1, 5], i32)),
        "gather_const_params": (lambda i: tf.gather(table, i), S([5], i32)),
        "gather_nd": (lambda x, i: tf.gather_nd(x, i), S([10, 4], f32), S([5, 1], i32)),
        "top_k": (lambda x: tf.math.top_k(x, 3).values, S([1, 10], f32)),
        "select_int32": (lambda a, b: tf.where(a > b, a, b), S([1, 8], i32), S([1, 8], i32)),
        "atan2": (lambda y, x: tf.math.atan2(y, x), S([1, 8], f32), S([1, 8], f32)),
        "cumsum_int32": (lambda a: tf.math.cumsum(a, axis=1), S([1, 8], i32)),
        "onnx2tf_guard": (onnx2tf_guard, S([10, 4], f32), S([5], i32)),
        "shrink_axis_slice": (lambda x: x[:, 0] * 2.0, S([1, 6, 4], f32)),
        "five_d": (lambda x: tf.reshape(tf.reshape(x, [1, 2, 2, 2, 4]) * 2.0, [1, 4, 2, 4]), S([1, 4, 2, 4], f32)),
        "bad_broadcast": (lambda a, b: a + b, S([1, 4, 4, 8], f32), S([4, 8], f32)),
        "two_sided_broadcast": (lambda x: x + parity, S([1, 8], f32)),     # [1,8] + [2,1] -> [2,8]
        "const_batch": (lambda x: x * 2.0 + rows, S([2, 8], f32)),         # constant [2,8]: batch 2
        "const_batch_3d": (lambda x: x + rows3, S([2, 4, 8], f32)),
        "cast_bool_to_int32": (lambda x: tf.cast(tf.cast(x < 20.0, i32), f32), S([1, 8], f32)),
        "chain_with_const_batch": (lambda x: tf.nn.relu(tf.math.abs(x * 2.0 + rows) - 3.0), S([2, 8], f32)),
        # known good
        "conv_prelu_add_reshape_concat": (conv_prelu_add_reshape_concat, S([1, 8, 8, 3], f32)),
        "gather_1d_axis0_axis1": (lambda x, y: (tf.gather(x, tf.constant([0, 2, 1], i32), axis=0),
                                                tf.gather(y, tf.constant([3, 0], i32), axis=1)),
                                  S([10, 4], f32), S([1, 6, 4], f32)),
        "gather_runtime_1d": (lambda x, i: tf.gather(x, i, axis=0), S([2304, 8], f32), S([64], i32)),
        "gpu_clean_sampler": (gpu_clean_sampler, S([2304, 8], f32), S([16], f32)),
        "same_shape_rows": (lambda x: x + row, S([1, 16], f32)),           # the lowering's layout: [1, 2K]
        "runtime_channel_broadcast": (lambda x, y: x * y, S([6, 8], f32), S([6, 1], f32)),
        "cast_float_to_int32": (lambda x: tf.cast(tf.cast(x, i32), f32) * 2.0, S([1, 8], f32)),
    }
    models = {}
    for name, (fn, *sig) in specs.items():
        concrete = tf.function(fn, input_signature=sig).get_concrete_function()
        models[name] = tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()
    concrete = tf.function(lambda x: tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")),
                           input_signature=[S([1, 8, 8, 3], f32)]).get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    models["fp16_weights"] = conv.convert()
    models["custom_op"] = _make_custom(models["conv_prelu_add_reshape_concat"], "PRELU", "MeshportTestOp")
    return models


def _make_custom(buf: bytes, builtin: str, custom_name: str) -> bytes:
    """The same model with every `builtin` op turned into a CUSTOM op (edited in the flatbuffer)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    model = fbu.read_model_from_bytearray(bytearray(buf))
    code = getattr(schema.BuiltinOperator, builtin)
    hits = [oc for oc in model.operatorCodes if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code]
    assert hits, f"no {builtin} in the model"
    for oc in hits:
        oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        oc.customCode = custom_name
    for op in model.subgraphs[0].operators:
        if model.operatorCodes[op.opcodeIndex] in hits:
            op.builtinOptionsType, op.builtinOptions = 0, None
    return bytes(fbu.convert_object_to_bytearray(model))


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return _build_models()


def _op_types(buf: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    codes = [m.operatorCodes[op.opcodeIndex] for op in m.subgraphs[0].operators]
    return [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in codes]


def _rules(report: GpuReport) -> set[tuple[str, str]]:
    return {(f.op_type, f.rule) for f in report.flagged}


# -- known bad -------------------------------------------------------------------------------------------------

BAD = {
    "gather_2d_indices": {("GATHER", "gather")},
    "gather_batch_dims": {("GATHER", "gather"), ("GATHER", "op-version")},
    "gather_const_params": {("GATHER", "gather")},
    "gather_nd": {("GATHER_ND", "unsupported-op")},
    "top_k": {("TOPK_V2", "unsupported-op")},
    "select_int32": {("SELECT", "select"), ("GREATER", "logical-op")},
    "atan2": {("ATAN2", "unsupported-op")},
    "cumsum_int32": {("CUMSUM", "cumsum")},
    "onnx2tf_guard": {("LESS", "logical-op"), ("CAST", "cast"), ("MUL", "tensor-type"), ("ADD", "tensor-type")},
    "shrink_axis_slice": {("STRIDED_SLICE", "slice")},
    "five_d": {("RESHAPE", "tensor-rank"), ("MUL", "tensor-rank")},
    "bad_broadcast": {("ADD", "broadcast")},
    "two_sided_broadcast": {("ADD", "broadcast"), ("ADD", "const-batch")},
    "const_batch": {("ADD", "const-batch")},
    "const_batch_3d": {("ADD", "const-batch")},
    "cast_bool_to_int32": {("LESS", "logical-op"), ("CAST", "cast")},
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_known_bad_ops_are_flagged_with_their_rule(models, name):
    report = check_gpu_compatibility(models[name])
    assert not report.ok
    assert _rules(report) == BAD[name], report.summary()
    for f in report.flagged:
        assert f.rule in RULES
        assert f.reason.startswith(f.op_type + ":") and len(f.reason) > len(f.op_type) + 20


def test_gather_reason_names_the_rule_and_what_was_found(models):
    (flag,) = check_gpu_compatibility(models["gather_2d_indices"]).flagged
    assert flag.op_type == "GATHER" and flag.version == 1
    assert "1-D int32" in flag.reason and "batch_dims 0" in flag.reason and "2-D int32 indices" in flag.reason
    by_rule = {f.rule: f for f in check_gpu_compatibility(models["gather_batch_dims"]).flagged}
    assert by_rule["gather"].version == 5 and "batch_dims=1" in by_rule["gather"].reason
    assert "maximum 1" in by_rule["op-version"].reason
    (const,) = check_gpu_compatibility(models["gather_const_params"]).flagged
    assert "constant params" in const.reason


def test_cast_and_select_reasons(models):
    guard = {f.op_type: f for f in check_gpu_compatibility(models["onnx2tf_guard"]).flagged}
    assert "bool->int32" in guard["CAST"].reason
    assert "int32 runtime input" in guard["LESS"].reason and "CAST" in guard["LESS"].reason
    assert "GATHER" not in guard  # the gather itself (runtime 1-D int32 indices) is fine
    select = {f.op_type: f for f in check_gpu_compatibility(models["select_int32"]).flagged}
    assert "int32" in select["SELECT"].reason


def test_custom_op_crafted_in_the_flatbuffer_is_flagged(models):
    assert "PRELU" not in _op_types(models["custom_op"])
    report = check_gpu_compatibility(models["custom_op"])
    assert _rules(report) == {("CUSTOM:MeshportTestOp", "custom-op")}
    assert len(report.flagged) == 1 and "custom ops are not allowed" in report.flagged[0].reason


# -- known good ------------------------------------------------------------------------------------------------

GOOD = {
    "conv_prelu_add_reshape_concat": {"CONV_2D", "PRELU", "ADD", "RESHAPE", "CONCATENATION"},
    "gather_1d_axis0_axis1": {"GATHER"},
    "gather_runtime_1d": {"GATHER"},
    "gpu_clean_sampler": {"FLOOR", "CAST", "GATHER", "LESS", "MUL", "RESHAPE"},
    "fp16_weights": {"DEQUANTIZE", "CONV_2D"},
    "same_shape_rows": {"ADD"},
    "runtime_channel_broadcast": {"MUL"},
    "cast_float_to_int32": {"CAST", "MUL"},
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_known_good_graphs_pass(models, name):
    assert GOOD[name] <= set(_op_types(models[name]))  # the graph really has the ops under test
    report = check_gpu_compatibility(models[name])
    assert report.ok and report.flagged == [], report.summary()
    assert report.ops == len(_op_types(models[name]))


def test_fp16_dequantize_of_constants_is_folded(models):
    report = check_gpu_compatibility(models["fp16_weights"])
    assert report.ok and report.folded_fp16_dequantize == _op_types(models["fp16_weights"]).count("DEQUANTIZE") > 0


# -- MediaPipe's own files -------------------------------------------------------------------------------------

def test_mediapipe_face_landmark_runs_on_the_gpu():
    report = check_gpu_compatibility(fetch("face_landmark.tflite"))
    assert report.ok, report.summary()
    assert report.ops > 200 and report.folded_fp16_dequantize > 100


def test_mediapipe_attention_mesh_is_flagged_only_for_its_custom_ops():
    report = check_gpu_compatibility(fetch("face_landmark_with_attention.tflite"))
    assert {f.rule for f in report.flagged} == {"custom-op"}
    assert {f.op_type for f in report.flagged} == {"CUSTOM:Landmarks2TransformMatrix",
                                                   "CUSTOM:TransformTensorBilinear", "CUSTOM:TransformLandmarks"}
    assert len(report.flagged) == 11


# -- API -------------------------------------------------------------------------------------------------------

def test_require_raises_listing_every_flagged_op_unless_allowed(models, tmp_path):
    path = tmp_path / "guard.tflite"
    path.write_bytes(models["onnx2tf_guard"])
    with pytest.raises(GpuCompatibilityError) as info:
        require_gpu_compatible(path)
    err = info.value
    assert isinstance(err, MeshportError) and err.report is not None
    for f in err.report.flagged:
        assert f"op #{f.op_index} " in str(err) and f.reason in str(err)
    assert str(path) in str(err)
    report = require_gpu_compatible(path, allow=True)
    assert not report.ok and len(report.flagged) == 4
    assert require_gpu_compatible(models["gather_runtime_1d"]).ok


def test_report_to_json_round_trips(models):
    report = check_gpu_compatibility(models["top_k"])
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is False and data["ops"] == report.ops and data["source"] == "<bytes>"
    assert [Flag(**f) for f in data["flagged"]] == report.flagged


def test_unreadable_input_raises_a_typed_error(tmp_path):
    with pytest.raises(GpuCompatibilityError, match="not a readable TFLite model"):
        check_gpu_compatibility(b"definitely not a flatbuffer")
    with pytest.raises(GpuCompatibilityError, match="cannot read"):
        check_gpu_compatibility(tmp_path / "missing.tflite")


def test_checker_does_not_import_tensorflow():
    code = "import sys, converters.gpu_check; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# -- static vs dynamic: the same verdict on the GPU accelerator itself --------------------------------------------

# One-op models where the classic delegate's rules (the static check) and LiteRT's GPU accelerator
# (compiled GPU-only, run, compared with the CPU reference kernels) must agree.
AGREE = ("gather_1d_axis0_axis1", "gather_runtime_1d", "gather_2d_indices", "gather_batch_dims", "gather_nd",
         "two_sided_broadcast", "const_batch", "const_batch_3d", "same_shape_rows", "runtime_channel_broadcast",
         "cast_float_to_int32", "custom_op", "top_k", "shrink_axis_slice", "five_d", "cumsum_int32", "gpu_clean_sampler")
# Ops LiteRT's WebGPU accelerator runs correctly although the classic delegate (OpenCL/GL/Metal,
# what Android and iOS apps get) rejects them: the static check is stricter by design there.
STATIC_STRICTER = ("atan2", "select_int32", "gather_const_params", "onnx2tf_guard", "bad_broadcast",
                   "cast_bool_to_int32")


def _gpu_or_skip():
    from runtime.litert_gpu import availability
    device, why = availability()
    if device is None:
        pytest.skip(reason=f"no GPU accelerator here: {why}")
    return device


@pytest.mark.parametrize("name", AGREE)
def test_static_and_dynamic_gpu_verdicts_agree(models, name):
    from runtime.litert_gpu import dynamic_check
    _gpu_or_skip()
    static = check_gpu_compatibility(models[name])
    dynamic = dynamic_check(models[name])
    assert static.ok == dynamic.ok, f"static: {static.summary()}\ndynamic: {dynamic}"


@pytest.mark.parametrize("name", STATIC_STRICTER)
def test_where_the_static_check_is_stricter_than_the_accelerator(models, name):
    from runtime.litert_gpu import dynamic_check
    _gpu_or_skip()
    assert not check_gpu_compatibility(models[name]).ok
    verdict = dynamic_check(models[name])
    assert verdict.ok, verdict.reason


def test_dynamic_check_sees_wrong_gpu_arithmetic(models):
    """The two-sided broadcast compiles fully on the accelerator; only running it shows it is wrong."""
    from runtime.litert_gpu import GpuModel, dynamic_check
    _gpu_or_skip()
    GpuModel(models["two_sided_broadcast"]).close()        # compiles GPU-only without complaint
    verdict = dynamic_check(models["two_sided_broadcast"])
    assert not verdict.ok and verdict.max_rel is not None and verdict.max_rel > 1e-2, verdict


def test_gpu_only_compile_names_the_refused_ops(models):
    from runtime.litert_gpu import GpuCompileError, GpuModel
    _gpu_or_skip()
    with pytest.raises(GpuCompileError) as info:
        GpuModel(models["gather_nd"])
    assert any(op.startswith("GATHER_ND") for op in info.value.ops), info.value
    with pytest.raises(GpuCompileError) as info:
        GpuModel(models["custom_op"])
    assert info.value.ops == ["CUSTOM:MeshportTestOp: custom op"]


def test_mediapipe_attention_mesh_fails_the_gpu_only_compile():
    """MediaPipe's own attention mesh needs its custom ops (CPU); the README's claim, measured."""
    from runtime.litert_gpu import GpuCompileError, GpuModel
    _gpu_or_skip()
    with pytest.raises(GpuCompileError) as info:
        GpuModel(fetch("face_landmark_with_attention.tflite"))
    assert any(op.startswith("CUSTOM:Landmarks2TransformMatrix") for op in info.value.ops), info.value


def test_gpu_localiser_names_the_first_op_the_gpu_computes_wrongly(models):
    """The localiser validate uses on a failing GPU edge: in a chain, the ADD of a batch-2 constant."""
    from runtime.litert_gpu import first_gpu_divergence
    _gpu_or_skip()
    x = np.random.default_rng(0).random((2, 8)).astype(np.float32)
    found = first_gpu_divergence(models["chain_with_const_batch"], {"x": x}, confirm=1)
    assert found is not None and found["op"] == "ADD" and found["inputs"] == [[2, 8], [2, 8]], found
    assert first_gpu_divergence(models["same_shape_rows"], {"x": x.reshape(1, 16)}) is None
