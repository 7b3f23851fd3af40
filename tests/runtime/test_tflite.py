"""The TFLite graph model (runtime.tflite) on tiny converted models, and the TFLite pass contract
(converters.tflite_pass): pre/postconditions checked, a pass that breaks its promise refused."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import FileFormatError, RegistryError
from runtime.tflite import DTYPES, Graph, TFLiteFormatError, type_code, type_name

ROOT = Path(__file__).resolve().parents[2]
C = np.arange(8, dtype=np.float32).reshape(1, 8) / 4


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    S, f32, i32 = tf.TensorSpec, tf.float32, tf.int32
    specs = {
        "add_const": (lambda x: tf.nn.relu(x + C), S([1, 8], f32)),
        "add_n": (lambda a, b: tf.math.add_n([a, b]) * 2.0, S([1, 4, 4, 8], f32), S([1, 4, 4, 8], f32)),
        "guard": (lambda x, i: tf.gather(x, i + tf.cast(i < 0, i32) * 10), S([10, 4], f32), S([5], i32)),
        "two_outputs": (lambda x: (tf.nn.relu(x) * 2.0, tf.reduce_mean(x, axis=1)), S([1, 8], f32)),
    }
    out = {}
    for name, (fn, *sig) in specs.items():
        concrete = tf.function(fn, input_signature=sig).get_concrete_function()
        out[name] = tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()
    return out


def _run(buf: bytes, *xs: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=buf)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def _with_offset_buffers(buf: bytes) -> bytes:
    """The model with every constant stored after the flatbuffer (offset/size), as large models are."""
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    model = fbu.read_model_from_bytearray(bytearray(buf))
    blobs = [(b, bytes(b.data)) for b in model.buffers if b.data is not None and len(b.data)]
    assert blobs
    for b, raw in blobs:
        b.data, b.offset, b.size = None, 1 << 40, len(raw)    # placeholders: the same width as the real offsets
    end = len(fbu.convert_object_to_bytearray(model))
    tail, pos = b"", -(-end // 16) * 16
    for b, raw in blobs:
        b.offset = pos
        tail += b"\0" * (pos - end - len(tail)) + raw
        pos = -(-(pos + len(raw)) // 16) * 16
    body = bytes(fbu.convert_object_to_bytearray(model))
    assert len(body) == end
    return body + tail


# -- the graph model ---------------------------------------------------------------------------

def test_import_loads_no_runtime():
    code = ("import sys, runtime.tflite; bad = {'tensorflow', 'ai_edge_litert'} & set(sys.modules); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dtype_table_is_the_schemas():
    from ai_edge_litert import schema_py_generated as schema
    codes = {k.lower(): v for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    for code, d in DTYPES.items():
        assert codes[d.name] == code, d
    assert [type_code(np.float32), type_code(np.dtype("int32")), type_code("bool")] == [0, 2, 6]
    assert type_name(1) == "float16" and type_name(99) == "type99"
    with pytest.raises(ValueError):
        type_code(np.object_)


def test_views_of_a_converted_model(models):
    g = Graph.from_bytes(models["add_const"], "add_const")
    assert [op.kind for op in g.ops] == ["ADD"] and g.histogram() == {"ADD": 1}   # RELU fused into the ADD
    (add,) = g.ops
    assert add.options["fusedActivationFunction"] == 1 and add.version >= 1
    x, c = (g.tensor(t) for t in add.inputs)
    assert (x.const, x.data, x.shape, x.type_name, x.dtype) == (False, None, (1, 8), "float32", np.float32)
    assert c.const and c.data.shape == (1, 8)
    np.testing.assert_array_equal(c.data, C)
    assert g.inputs == (x.index,) and g.outputs == add.outputs
    assert g.producer(add.outputs[0]) == add and g.consumers()[x.index] == [add] and g.producer(x.index) is None
    assert g.find(x.name) == x and g.find("no such tensor") is None


def test_round_trip_keeps_everything(models):
    for name, buf in models.items():
        g = Graph.from_bytes(buf, name)
        again = Graph.from_bytes(g.to_bytes(), name)
        assert again.ops == g.ops and again.inputs == g.inputs and again.outputs == g.outputs, name
        assert [(t.name, t.shape, t.type, t.const) for t in again.tensors] == \
            [(t.name, t.shape, t.type, t.const) for t in g.tensors], name
        for a, b in zip(again.tensors, g.tensors):
            assert (a.data is None) == (b.data is None) and (a.data is None or np.array_equal(a.data, b.data))
        assert again.signatures() == g.signatures()
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(1, 8)
    np.testing.assert_array_equal(_run(Graph.from_bytes(models["add_const"]).to_bytes(), x)[0],
                                  np.maximum(x + C, 0))


def test_custom_ops_are_named_with_their_custom_code(models):
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    model = fbu.read_model_from_bytearray(bytearray(models["add_const"]))
    (oc,) = model.operatorCodes
    oc.builtinCode = oc.deprecatedBuiltinCode = 32      # BuiltinOperator.CUSTOM
    oc.customCode = "MeshportTestOp"
    model.subgraphs[0].operators[0].builtinOptionsType, model.subgraphs[0].operators[0].builtinOptions = 0, None
    g = Graph.from_bytes(bytes(fbu.convert_object_to_bytearray(model)))
    assert [op.kind for op in g.ops] == ["CUSTOM:MeshportTestOp"] and g.ops[0].options == {}


def test_buffers_after_the_flatbuffer_are_read_and_written_inline(models):
    buf = models["add_const"]
    offset = _with_offset_buffers(buf)
    g = Graph.from_bytes(offset, "offset model")
    (c,) = [t for t in g.tensors if t.const]
    np.testing.assert_array_equal(c.data, C)
    x = np.ones((1, 8), np.float32)
    inline = g.to_bytes()
    assert len(inline) < len(offset) + 64
    assert [(t.name, t.shape, t.const) for t in Graph.from_bytes(inline).tensors] == \
        [(t.name, t.shape, t.const) for t in g.tensors]
    np.testing.assert_array_equal(_run(inline, x)[0], _run(buf, x)[0])
    with pytest.raises(TFLiteFormatError, match="offset model: not a readable TFLite model.*buffer"):
        Graph.from_bytes(offset[:-8], "offset model")


def test_unreadable_bytes_raise_one_typed_error_naming_the_source(models, tmp_path):
    buf = models["add_const"]
    for bad in (b"", b"garbage" * 10, buf[:4] + b"XXXX" + buf[8:], buf[: len(buf) // 2]):
        with pytest.raises(TFLiteFormatError, match="^src.bin: not a readable TFLite model") as info:
            Graph.from_bytes(bad, "src.bin")
        assert isinstance(info.value, FileFormatError)
    with pytest.raises(TFLiteFormatError, match="cannot read"):
        Graph.load(tmp_path / "missing.tflite")
    # a constant whose bytes no longer match its shape
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    model = fbu.read_model_from_bytearray(bytearray(buf))
    (c,) = [t for t in model.subgraphs[0].tensors if t.buffer and model.buffers[t.buffer].data is not None]
    c.shape = [1, 9]
    with pytest.raises(TFLiteFormatError, match="needs 36"):
        Graph.from_bytes(bytes(fbu.convert_object_to_bytearray(model)))


def test_edits_and_submodels(models):
    g = Graph.from_bytes(models["two_outputs"])
    kinds = g.histogram()
    mean = next(op for op in g.ops if op.kind == "MEAN")
    keep = [t for t in g.outputs if t != mean.outputs[0]]
    g.subgraph.outputs = keep
    g.changed()
    assert g.drop_dead_ops() == 1 and g.histogram() == {k: n for k, n in kinds.items() if k != "MEAN"}
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    (y,) = _run(g.to_bytes(), x)
    np.testing.assert_array_equal(y, np.maximum(x, 0) * 2)
    relu, before = next(op for op in g.ops if op.kind == "RELU"), (g.ops, g.inputs, g.outputs, g.signatures())
    part = Graph.from_bytes(g.submodel([relu.index], g.inputs, relu.outputs))
    assert [op.kind for op in part.ops] == ["RELU"] and part.signatures() == {}
    np.testing.assert_array_equal(_run(part.to_bytes(), x)[0], np.maximum(x, 0))
    assert (g.ops, g.inputs, g.outputs, g.signatures()) == before      # the graph itself is left as it was
    t = g.add_const(np.full((1, 8), 3, np.float32), "three")
    g.replace_op(relu.index, "ADD", [g.inputs[0], t], options="AddOptions")
    np.testing.assert_array_equal(_run(g.to_bytes(), x)[0], (x + 3) * 2)


# -- the pass contract -------------------------------------------------------------------------

def test_passes_are_registered_once_in_pipeline_order():
    from converters.tflite_passes import PASSES, Pass, get_pass, pipeline, register_pass
    assert [p.name for p in pipeline()] == ["strip_gather_guards", "fuse_prelu", "add_n_to_add", "drop_identity_convs",
                                          "float_hybrid_fc"]
    assert [p.exact for p in pipeline()] == [True, True, True, True, False]
    assert "rename_io" in PASSES and get_pass("rename_io", ["x"], ["y"]).outputs == ["y"]
    with pytest.raises(RegistryError, match="already registered"):
        register_pass(type("Again", (Pass,), {"name": "fuse_prelu"}))
    with pytest.raises(RegistryError, match="known: add_n_to_add"):
        get_pass("no_such_pass")


def test_a_pass_that_leaves_its_pattern_fails_its_postcondition(models):
    from converters.tflite_passes import AddNToAdd, PassConditionError, StripGatherGuards

    class Lazy(AddNToAdd):
        def apply(self, g):
            return 0

    class LazyGuards(StripGatherGuards):
        def apply(self, g):
            return 0

    out, n = AddNToAdd()(models["add_n"])
    assert n == 1 and "ADD_N" not in Graph.from_bytes(out).histogram()
    with pytest.raises(PassConditionError, match=r"\[tflite-passes\] at add_n_to_add: postcondition "
                                                 r"'no two-input float32 ADD_N remains'") as info:
        Lazy()(models["add_n"])
    assert info.value.pass_name == "add_n_to_add" and info.value.violations
    out, n = StripGatherGuards()(models["guard"])
    assert n == 1 and not {"LESS", "CAST"} & set(Graph.from_bytes(out).histogram())
    x, i = np.arange(40, dtype=np.float32).reshape(10, 4), np.array([0, 3, 9, 2, 2], np.int32)
    np.testing.assert_array_equal(_run(out, x, i)[0], x[i])
    with pytest.raises(PassConditionError, match="no LESS/CAST-bool guard feeds a GATHER"):
        LazyGuards()(models["guard"])


def test_a_pass_that_breaks_the_graph_is_refused(models):
    from converters.tflite_passes import AddNToAdd, PassConditionError

    class Breaks(AddNToAdd):
        def apply(self, g):
            first = g.ops[0]
            g.remove_ops([first.index])             # its output is still read
            return 1

    with pytest.raises(PassConditionError, match="before it is written"):
        Breaks()(models["add_n"])


def test_rename_io_conditions(models):
    from converters.tflite_passes import SIGNATURE_KEY, PassConditionError, RenameIO
    g = Graph.from_bytes(models["two_outputs"])
    RenameIO(["image"], ["scaled", "mean"]).run(g)
    assert [g.tensor(t).name for t in g.inputs] == ["image"]
    assert list(g.signatures()) == [SIGNATURE_KEY] and [n for n, _ in g.signatures()[SIGNATURE_KEY][1]] == \
        ["scaled", "mean"]
    with pytest.raises(PassConditionError, match="precondition.*spec's 1 input.*model has 1 inputs/2 outputs"):
        RenameIO(["image"], ["scaled"])(models["two_outputs"])

    class NoSignature(RenameIO):
        def apply(self, g):
            n = super().apply(g)
            g.model.signatureDefs = []
            return n

    with pytest.raises(PassConditionError, match=f"postcondition .one {SIGNATURE_KEY} signature maps"):
        NoSignature(["image"], ["scaled", "mean"])(models["two_outputs"])
