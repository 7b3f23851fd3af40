"""TFLite passes on tiny converted graphs: each keeps the outputs and changes only what it says."""
from __future__ import annotations

import numpy as np
import pytest

from converters.onnx_tflite import run_native
from runtime.runners import get_runner
from converters.tflite_passes import SIGNATURE_KEY, add_n_to_add, drop_identity_convs, op_histogram, rename_io

tf = pytest.importorskip("tensorflow")


def _tflite(fn, *shapes) -> bytes:
    sig = [tf.TensorSpec(s, tf.float32) for s in shapes]
    concrete = tf.function(fn, input_signature=sig).get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()


def _same_outputs(a: bytes, b: bytes, feed: dict) -> None:
    def run(model: bytes) -> dict:
        with get_runner("tflite")(None, model) as r:
            return r.run_native(feed)
    before, after = run(a), run(b)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_add_n_becomes_add():
    model = _tflite(lambda a, b: tf.nn.relu(tf.math.add_n([a, b])), [1, 4, 4, 8], [1, 4, 4, 8])
    assert op_histogram(model).get("ADD_N") == 1
    out, n = add_n_to_add(model)
    assert n == 1 and "ADD_N" not in op_histogram(out) and op_histogram(out)["ADD"] == 1
    rng = np.random.default_rng(0)
    _same_outputs(model, out, {k: rng.standard_normal((1, 4, 4, 8)).astype(np.float32) for k in ("a", "b")})


def test_identity_convs_are_dropped_and_others_kept():
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=(3, 3, 8, 8)).astype(np.float32))
    ones, twos = np.ones((1, 1, 8, 1), np.float32), np.full((1, 1, 8, 1), 2.0, np.float32)

    def f(x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        a = tf.nn.depthwise_conv2d(y, ones, [1, 1, 1, 1], "VALID")            # identity, depthwise
        b = tf.nn.conv2d(y, np.ones((1, 1, 1, 8), np.float32), 1, "VALID")     # identity, 8 groups of 1
        c = tf.nn.depthwise_conv2d(y, twos, [1, 1, 1, 1], "VALID")            # ×2: not an identity
        return a + b * c, tf.nn.relu(tf.nn.depthwise_conv2d(x, ones, [1, 1, 1, 1], "VALID"))

    model = _tflite(f, [1, 6, 6, 8])
    # The identity with a fused RELU is a ReLU, not an identity: it stays too.
    assert op_histogram(model) == {"ADD": 1, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 3, "MUL": 1}
    out, n = drop_identity_convs(model)
    assert n == 2 and op_histogram(out) == {"ADD": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 2, "MUL": 1}
    _same_outputs(model, out, {"x": rng.standard_normal((1, 6, 6, 8)).astype(np.float32)})


def test_passes_leave_models_without_their_pattern_alone():
    model = _tflite(lambda a: tf.nn.relu(a) * 2.0, [1, 4, 4, 8])
    for tflite_pass in (add_n_to_add, drop_identity_convs):
        out, n = tflite_pass(model)
        assert n == 0 and op_histogram(out) == op_histogram(model)


def _with_signatures(buf: bytes, *keys: str) -> bytes:
    """The model with stale signatures under `keys`, mapping "output_k" to the k-th graph output."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    model = fbu.read_model_from_bytearray(bytearray(buf))
    sg = model.subgraphs[0]
    model.signatureDefs = []
    for key in keys:
        sig = schema.SignatureDefT(signatureKey=key.encode())
        sig.inputs = [schema.TensorMapT(name=b"x", tensorIndex=int(sg.inputs[0]))]
        sig.outputs = [schema.TensorMapT(name=f"output_{k}".encode(), tensorIndex=int(t))
                       for k, t in enumerate(sg.outputs)]
        model.signatureDefs.append(sig)
    return bytes(fbu.convert_object_to_bytearray(model))


@pytest.mark.parametrize("stale", [(), (SIGNATURE_KEY, "other")])
def test_rename_io_writes_the_one_serving_signature(stale):
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter

    model = _with_signatures(_tflite(lambda x: (tf.nn.relu(x) * 2.0, tf.reduce_mean(x, axis=[1, 2])), [1, 4, 4, 3]),
                             *stale)
    names = ["scaled", "mean"]                # not sorted: the signature keeps the spec's order
    out = rename_io(model, ["image"], names)
    it = Interpreter(model_content=out)
    assert it.get_signature_list() == {SIGNATURE_KEY: {"inputs": ["image"], "outputs": sorted(names)}}
    assert CompiledModel.from_buffer(out).get_signature_list() == {
        SIGNATURE_KEY: {"inputs": ["image"], "outputs": names}}
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 3)).astype(np.float32)
    got, plain = it.get_signature_runner(SIGNATURE_KEY)(image=x), run_native(out, x)
    assert got.keys() == plain.keys() == set(names)
    for k in names:
        np.testing.assert_array_equal(got[k], plain[k])
    np.testing.assert_allclose(got["mean"], x.mean(axis=(1, 2)), rtol=1e-6)


def _hybrid_fc_model(rng) -> tuple[bytes, np.ndarray, np.ndarray]:
    """x (2, 6) · Wᵀ + b with a (4096, 6) constant W (a GridSample base grid's size), through TFLite's
    dynamic-range quantisation: the converter makes it a hybrid FULLY_CONNECTED (int8 W, float x)."""
    w = rng.uniform(-1, 1, (4096, 6)).astype(np.float32)
    b = rng.uniform(-1, 1, 4096).astype(np.float32)
    concrete = tf.function(lambda x: tf.matmul(x, w, transpose_b=True) + b,
                           input_signature=[tf.TensorSpec([2, 6], tf.float32)]).get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return conv.convert(), w, b


def test_hybrid_fully_connected_becomes_float_and_gpu_clean():
    from converters.gpu_check import check_gpu_compatibility
    from converters.tflite_passes import float_hybrid_fc
    from runtime.tflite import Graph
    rng = np.random.default_rng(0)
    model, w, b = _hybrid_fc_model(rng)
    g = Graph.from_bytes(model)
    fc = next(op for op in g.ops if op.kind == "FULLY_CONNECTED")
    assert g.tensor(fc.inputs[1]).type == 9 and fc.version > 9          # int8 weights, above the GPU's 9
    assert not check_gpu_compatibility(model).ok
    q = g.dequantized(fc.inputs[1])
    # The int8 weights are W rounded to its per-row scale: within half a step of W.
    step = np.abs(w).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(q - w) <= step / 2 * (1 + 1e-6))
    out, n = float_hybrid_fc(model)
    assert n == 1
    g2 = Graph.from_bytes(out)
    fc2 = next(op for op in g2.ops if op.kind == "FULLY_CONNECTED")
    assert g2.tensor(fc2.inputs[1]).type == 0 and fc2.version == 1 and not fc2.options["asymmetricQuantizeInputs"]
    np.testing.assert_array_equal(g2.const(fc2.inputs[1]), q)
    assert check_gpu_compatibility(out).ok
    x = rng.uniform(-1, 1, (2, 6)).astype(np.float32)
    got = next(iter(run_native(out, x).values()))
    hybrid = next(iter(run_native(model, x).values()))
    # Float arithmetic on the int8-rounded weights: each output a 6-term float32 dot product plus a
    # bias, |terms| ≤ 1, so within 8 roundings of 2 (≈ 2e-6) of the float64 result.
    np.testing.assert_allclose(got, x.astype(np.float64) @ q.T.astype(np.float64) + b, rtol=0, atol=2e-6)
    # The hybrid kernel also rounded x to int8 (asymmetric, per row): it is further off, by up to
    # Σ|W|·(x range / 255)/2 per output; the float one does not carry that error.
    x_step = (x.max(axis=1, keepdims=True) - x.min(axis=1, keepdims=True)) / 255
    assert np.abs(hybrid - got).max() > 2e-6
    assert np.all(np.abs(hybrid - got) <= np.abs(q).sum(axis=1) * x_step / 2 * 1.01 + 2e-6)
