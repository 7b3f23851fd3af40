"""Passes on a TFLite flatbuffer (model object API of ai_edge_litert.tools.flatbuffer_utils).

`strip_gather_guards`: onnx2tf wraps every GATHER with runtime indices in a negative-index guard
`indices + cast(indices < 0) * dim` (LESS, CAST bool→int32, MUL, ADD), which the GPU delegate
cannot run. Where the indices are clamped to [0, n) — as Meshport's GridSample lowering makes
them — the guard is a no-op: the pass feeds each GATHER its raw indices and drops dead ops.
Callers verify numerically that the model computes the same before and after.

`fuse_prelu`: onnx2tf's fallback PReLUs back into native PRELU. `add_n_to_add`: two-input ADD_N
(onnx2tf's `Sum`) as ADD, which XNNPACK delegates. `drop_identity_convs`: remove the 1×1 unit
convolutions the GridSample lowering ends its crops with (they tell onnx2tf the crop is NHWC).

`rename_io`: give inputs/outputs the names of the model spec and write the one signature,
`serving_default`, that maps those names to them (replacing whatever onnx2tf left)."""
from __future__ import annotations

import re

import numpy as np

from .base import ConversionError

STEP = "tflite-passes"
# The signature every artifact carries (TensorFlow's default key, what signature runners look up).
SIGNATURE_KEY = "serving_default"


def _load(buf: bytes):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(bytes(buf[:8]), 0):
        raise ConversionError(STEP, "input is not a TFLite flatbuffer (missing TFL3 identifier)")
    try:
        model = fbu.read_model_from_bytearray(bytearray(buf))
        if not model.subgraphs:
            raise ValueError("no subgraph")
        return model
    except ConversionError:
        raise
    except Exception as exc:  # truncated or tampered buffers fail in many ways
        raise ConversionError(STEP, f"input is not a readable TFLite model ({type(exc).__name__}: {exc})") from exc


def _save(model) -> bytes:
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    return bytes(fbu.convert_object_to_bytearray(model))


def _op_names(model) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for oc in model.operatorCodes:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        out.append("CUSTOM" if oc.customCode else names.get(code, str(code)))
    return out


def _const(model, sg, tensor: int) -> np.ndarray | None:
    t = sg.tensors[tensor]
    data = model.buffers[t.buffer].data
    if data is None or len(data) == 0:
        return None
    dtype = {2: np.int32, 4: np.int64, 0: np.float32, 1: np.float16}.get(t.type)
    return None if dtype is None else np.frombuffer(bytes(data), dtype=dtype)


def strip_gather_guards(buf: bytes) -> tuple[bytes, int]:
    model = _load(buf)
    kinds = _op_names(model)
    sg = model.subgraphs[0]
    producer = {int(t): op for op in sg.operators for t in op.outputs}

    def kind(op) -> str:
        return kinds[op.opcodeIndex]

    def parse_guard(t: int) -> int | None:
        """If tensor t = idx + cast(idx < 0) * dim, return idx."""
        add = producer.get(t)
        if add is None or kind(add) != "ADD":
            return None
        for a, b in ((0, 1), (1, 0)):
            raw, mul = int(add.inputs[a]), producer.get(int(add.inputs[b]))
            if mul is None or kind(mul) != "MUL":
                continue
            for c, d in ((0, 1), (1, 0)):
                cast, dim = producer.get(int(mul.inputs[c])), _const(model, sg, int(mul.inputs[d]))
                if cast is None or kind(cast) != "CAST" or dim is None:
                    continue
                less = producer.get(int(cast.inputs[0]))
                if less is None or kind(less) != "LESS" or int(less.inputs[0]) != raw:
                    continue
                zero = _const(model, sg, int(less.inputs[1]))
                if zero is not None and zero.size == 1 and zero.item() == 0:
                    return raw
        return None

    rewired = 0
    for op in sg.operators:
        if kind(op) == "GATHER" and len(op.inputs) > 1:
            raw = parse_guard(int(op.inputs[1]))
            if raw is not None:
                op.inputs[1] = raw
                rewired += 1
    if rewired:
        _drop_dead_ops(sg)
    return _save(model), rewired


def _drop_dead_ops(sg) -> None:
    keep_outputs = {int(t) for t in sg.outputs}
    changed = True
    while changed:
        used = {int(t) for op in sg.operators for t in op.inputs if int(t) >= 0} | keep_outputs
        alive = [op for op in sg.operators if any(int(t) in used for t in op.outputs)]
        changed = len(alive) != len(sg.operators)
        sg.operators = alive


def rename_io(buf: bytes, inputs: list[str], outputs: list[str]) -> bytes:
    """Give graph inputs/outputs the spec names (onnx2tf names outputs Identity, Identity_1, …) and
    make the model's only signature `serving_default`: spec names → those tensors, in spec order."""
    model = _load(buf)
    sg = model.subgraphs[0]
    if len(sg.inputs) != len(inputs) or len(sg.outputs) != len(outputs):
        raise ConversionError(STEP, f"model has {len(sg.inputs)} inputs/{len(sg.outputs)} outputs, "
                                    f"spec declares {len(inputs)}/{len(outputs)}")
    for t, name in zip(sg.inputs, inputs):
        sg.tensors[int(t)].name = name.encode()
    # The k-th ONNX output is the signature's "output_k" (or its ONNX name, which onnx2tf keeps
    # for some graphs), or a tensor named "Identity_k" ("Identity" for k=0) or
    # "[Stateful]PartitionedCall:k"; graph outputs may be listed in another order, so names,
    # not positions, decide.
    order: dict[int, int] = {}
    for sig in model.signatureDefs or []:
        for tm in sig.outputs or []:
            m = re.fullmatch(rb"output_(\d+)", tm.name or b"")
            if m:
                order[int(tm.tensorIndex)] = int(m.group(1))
            elif (tm.name or b"").decode() in outputs:
                order[int(tm.tensorIndex)] = outputs.index(tm.name.decode())
    for pos, t in enumerate(sg.outputs):
        tensor = sg.tensors[int(t)]
        m = re.fullmatch(rb"Identity(?:_(\d+))?|(?:Stateful)?PartitionedCall:(\d+)", tensor.name or b"")
        k = order.get(int(t))
        if k is None and m:
            k = int(m.group(1) or m.group(2) or 0)
        if k is None:
            k = pos
        if k >= len(outputs):
            raise ConversionError(STEP, f"output {tensor.name!r} has no spec name")
        tensor.name = outputs[k].encode()
    named = {sg.tensors[int(t)].name.decode(): int(t) for t in sg.outputs}
    if sorted(named) != sorted(outputs):
        got = [sg.tensors[int(t)].name.decode() for t in sg.outputs]
        raise ConversionError(STEP, f"graph outputs got the spec names {got}: each of {outputs} must name one")
    model.signatureDefs = [_serving_signature(list(zip(inputs, map(int, sg.inputs))),
                                              [(name, named[name]) for name in outputs])]
    return _save(model)


def _serving_signature(inputs: list[tuple[str, int]], outputs: list[tuple[str, int]]):
    """The `serving_default` signature of subgraph 0 from (name, tensor index) pairs, in order."""
    from ai_edge_litert import schema_py_generated as schema

    def tensor_map(name: str, tensor: int):
        tm = schema.TensorMapT()
        tm.name, tm.tensorIndex = name.encode(), tensor
        return tm

    sig = schema.SignatureDefT()
    sig.signatureKey = SIGNATURE_KEY.encode()
    sig.subgraphIndex = 0
    sig.inputs = [tensor_map(*io) for io in inputs]
    sig.outputs = [tensor_map(*io) for io in outputs]
    return sig


def op_histogram(buf: bytes) -> dict[str, int]:
    model = _load(buf)
    kinds = _op_names(model)
    counts: dict[str, int] = {}
    for op in model.subgraphs[0].operators:
        counts[kinds[op.opcodeIndex]] = counts.get(kinds[op.opcodeIndex], 0) + 1
    return dict(sorted(counts.items()))


def fuse_prelu(buf: bytes) -> tuple[bytes, int]:
    """Re-fuse PReLUs that onnx2tf emitted as `relu(x) + (x − |x|)·c` (its fallback when it could
    not build a native PReLU) into one PRELU with alpha = 2c, where x is NHWC and c is a constant
    per-channel vector on the last axis (the form the GPU delegate and XNNPACK run natively).
    Callers verify numerically that the model computes the same before and after."""
    from ai_edge_litert import schema_py_generated as schema

    model = _load(buf)
    kinds = _op_names(model)
    sg = model.subgraphs[0]
    producer = {int(t): op for op in sg.operators for t in op.outputs}

    def made_by(t: int, kind: str):
        op = producer.get(int(t))
        return op if op is not None and kinds[op.opcodeIndex] == kind else None

    prelu_code = _opcode(model, schema.BuiltinOperator.PRELU)
    kinds = _op_names(model)
    fused = 0
    for pos, add in enumerate(list(sg.operators)):
        if kinds[add.opcodeIndex] != "ADD" or len(add.inputs) != 2:
            continue
        if add.builtinOptions is not None and getattr(add.builtinOptions, "fusedActivationFunction", 0):
            continue
        for a, b in ((0, 1), (1, 0)):
            relu, mul = made_by(add.inputs[a], "RELU"), made_by(add.inputs[b], "MUL")
            if relu is None or mul is None:
                continue
            x = int(relu.inputs[0])
            const_t = next((int(t) for t in mul.inputs if _weight(model, sg, int(t), producer, kinds) is not None), None)
            c = None if const_t is None else _weight(model, sg, const_t, producer, kinds)
            sub = next((made_by(t, "SUB") for t in mul.inputs if made_by(t, "SUB") is not None), None)
            if c is None or sub is None or int(sub.inputs[0]) != x:
                continue
            absop = made_by(sub.inputs[1], "ABS")
            shape = list(sg.tensors[x].shape)
            if absop is None or int(absop.inputs[0]) != x or len(shape) != 4 or c.size != shape[-1]:
                continue
            c_shape = list(sg.tensors[const_t].shape)
            if any(d != 1 for d in c_shape[:-1]):
                continue  # not a last-axis (NHWC channel) vector
            alpha = _add_const(model, sg, (2.0 * c).astype(np.float32).reshape(1, 1, -1), f"prelu_alpha_{fused}")
            op = schema.OperatorT()
            op.opcodeIndex = prelu_code
            op.inputs = np.array([x, alpha], dtype=np.int32)
            op.outputs = np.array(add.outputs, dtype=np.int32)
            sg.operators[pos] = op
            fused += 1
            break
    if fused:
        _drop_dead_ops(sg)
    return _save(model), fused


def _weight(model, sg, tensor: int, producer: dict, kinds: list[str]) -> np.ndarray | None:
    """A constant as float32: stored directly, or behind a DEQUANTIZE of fp16 weights."""
    value = _const(model, sg, tensor)
    if value is not None:
        return value.astype(np.float32)
    op = producer.get(tensor)
    if op is not None and kinds[op.opcodeIndex] == "DEQUANTIZE":
        value = _const(model, sg, int(op.inputs[0]))
        return None if value is None else value.astype(np.float32)
    return None


def _opcode(model, builtin: int) -> int:
    from ai_edge_litert import schema_py_generated as schema
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin and not oc.customCode:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _add_const(model, sg, value: np.ndarray, name: str) -> int:
    from ai_edge_litert import schema_py_generated as schema
    buf = schema.BufferT()
    buf.data = np.frombuffer(value.tobytes(), dtype=np.uint8)
    model.buffers.append(buf)
    t = schema.TensorT()
    t.shape = np.array(value.shape, dtype=np.int32)
    t.type = schema.TensorType.FLOAT32
    t.buffer = len(model.buffers) - 1
    t.name = name.encode()
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def add_n_to_add(buf: bytes) -> tuple[bytes, int]:
    """Turn each two-input float ADD_N (what onnx2tf makes of an ONNX `Sum`) into ADD: the same
    sum, bit for bit, and cheaper on the XNNPACK interpreter (the attention mesh's 18 backbone
    ADD_Ns took 0.25 ms op by op; as ADDs all 66 residual adds, heads included, take 0.14 ms)."""
    from ai_edge_litert import schema_py_generated as schema

    model = _load(buf)
    kinds = _op_names(model)
    sg = model.subgraphs[0]
    add_code = _opcode(model, schema.BuiltinOperator.ADD)
    count = 0
    for op in sg.operators:
        if kinds[op.opcodeIndex] != "ADD_N" or len(op.inputs) != 2:
            continue
        a, b, out = (sg.tensors[int(t)] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
        if {a.type, b.type, out.type} != {schema.TensorType.FLOAT32} or list(a.shape) != list(b.shape):
            continue
        op.opcodeIndex = add_code
        op.builtinOptionsType = schema.BuiltinOptions.AddOptions
        op.builtinOptions = schema.AddOptionsT()
        count += 1
    return _save(model), count


def drop_identity_convs(buf: bytes) -> tuple[bytes, int]:
    """Remove float 1×1 convolutions that compute x·1 + 0 per channel (depthwise or grouped with
    all-one weights, or a full conv with the identity matrix; zero or no bias, no activation),
    feeding their input to their consumers. The GridSample lowering ends in one: it is how
    onnx2tf learns that the crop is channels-last (see lowering.py)."""
    from ai_edge_litert import schema_py_generated as schema

    model = _load(buf)
    kinds = _op_names(model)
    sg = model.subgraphs[0]
    producer = {int(t): op for op in sg.operators for t in op.outputs}
    graph_outputs = {int(t) for t in sg.outputs}
    rewire: dict[int, int] = {}
    dropped = []
    for op in sg.operators:
        kind = kinds[op.opcodeIndex]
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or len(op.inputs) < 2:
            continue
        x, out = int(op.inputs[0]), int(op.outputs[0])
        xt, ot = sg.tensors[x], sg.tensors[out]
        opts = op.builtinOptions
        if out in graph_outputs or xt.type != schema.TensorType.FLOAT32 or ot.type != schema.TensorType.FLOAT32 \
                or list(xt.shape) != list(ot.shape) or len(xt.shape) != 4 or opts is None \
                or opts.fusedActivationFunction or (opts.strideH, opts.strideW) != (1, 1):
            continue
        w = _weight(model, sg, int(op.inputs[1]), producer, kinds)
        wshape = list(sg.tensors[int(op.inputs[1])].shape)
        c = int(xt.shape[-1])
        if w is None or len(wshape) != 4 or wshape[1:3] != [1, 1]:
            continue
        if kind == "DEPTHWISE_CONV_2D" or wshape[-1] == 1:      # per channel: all ones, C of them
            identity = w.size == c and wshape[0 if kind == "CONV_2D" else 3] == c and np.all(w == 1.0)
        else:                                                 # full 1×1 conv: the identity matrix
            identity = wshape == [c, 1, 1, c] and np.array_equal(w.reshape(c, c), np.eye(c, dtype=np.float32))
        bias = None
        if len(op.inputs) > 2 and int(op.inputs[2]) >= 0:
            bias = _weight(model, sg, int(op.inputs[2]), producer, kinds)
            if bias is None:
                continue
        if identity and (bias is None or not np.any(bias)):
            rewire[out] = rewire.get(x, x)
            dropped.append(op)
    if dropped:
        gone = {id(op) for op in dropped}
        sg.operators = [op for op in sg.operators if id(op) not in gone]
        for op in sg.operators:
            op.inputs = np.array([rewire.get(int(t), int(t)) for t in op.inputs], dtype=np.int32)
        _drop_dead_ops(sg)
    return _save(model), len(dropped)
