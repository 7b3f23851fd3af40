"""Passes on a TFLite graph (`runtime.tflite.Graph`), each a registered `Pass` (tflite_pass.py)
that declares what it needs and what it leaves behind, both checked when it runs.

`strip_gather_guards`: onnx2tf wraps every GATHER with runtime indices in a negative-index guard
`indices + cast(indices < 0) * dim` (LESS, CAST bool→int32, MUL, ADD), which the GPU delegate
cannot run. Where the indices are clamped to [0, n) — as Meshport's GridSample lowering makes
them — the guard is a no-op: the pass feeds each GATHER its raw indices and drops dead ops.
Callers verify numerically that the model computes the same before and after.

`fuse_prelu`: onnx2tf's fallback PReLUs back into native PRELU. `add_n_to_add`: two-input ADD_N
(onnx2tf's `Sum`) as ADD, which XNNPACK delegates. `drop_identity_convs`: remove the 1×1 unit
convolutions the GridSample lowering ends its crops with (they tell onnx2tf the crop is NHWC).
`float_hybrid_fc`: hybrid (int8-weight) FULLY_CONNECTEDs of dynamic-range models as float ones,
which the GPU delegate takes (the only pass that changes outputs: the parity gate judges it).

`rename_io`: give inputs/outputs the names of the model spec and write the one signature,
`serving_default`, that maps those names to them (replacing whatever onnx2tf left).

`nchw_outputs` (after `rename_io`): onnx2tf leaves every 4-D output channels-last; a 4-D output
the spec declares (N, C, H, W) that comes out (N, H, W, C) gets a TRANSPOSE back, so the
artifact's outputs have the spec's shapes and layout (a runner would otherwise only reshape them,
scrambling the values)."""
from __future__ import annotations

import re

import numpy as np

from runtime.tflite import Graph, Op

from .base import ConversionError
from .tflite_pass import (PASSES, STEP, Condition, Pass, PassConditionError, get_pass, load_graph, pipeline,
                          register_pass)

__all__ = ["PASSES", "SIGNATURE_KEY", "STEP", "Condition", "Pass", "PassConditionError", "get_pass", "pipeline",
           "register_pass", "StripGatherGuards", "FusePrelu", "AddNToAdd", "DropIdentityConvs", "RenameIO",
           "NchwOutputs", "FloatHybridFC", "float_hybrid_fc", "strip_gather_guards", "fuse_prelu", "add_n_to_add", "drop_identity_convs", "rename_io",
           "nchw_outputs", "op_histogram"]

# The signature every artifact carries (TensorFlow's default key, what signature runners look up).
SIGNATURE_KEY = "serving_default"
F32 = 0  # TensorType FLOAT32
INT8 = 9  # TensorType INT8


def _matches(g: Graph, kinds: tuple[str, ...], match, what: str) -> list[str]:
    """Violations of "no op of `kinds` matches `match`" (for the passes' postconditions)."""
    return [f"op {op.index} ({op.kind}) is still {what}" for op in g.ops if op.kind in kinds and match(g, op)]


def _weight(g: Graph, tensor: int) -> np.ndarray | None:
    """A constant as float32: stored directly, or behind a DEQUANTIZE of fp16 weights."""
    value = g.const(tensor)
    if value is None:
        op = g.made_by(tensor, "DEQUANTIZE")
        value = None if op is None else g.const(op.inputs[0])
    return None if value is None else value.astype(np.float32)


# -- strip_gather_guards -----------------------------------------------------------------------

def _guarded_index(g: Graph, t: int) -> int | None:
    """If tensor t = idx + cast(idx < 0) * dim, return idx."""
    add = g.made_by(t, "ADD")
    if add is None or len(add.inputs) != 2:
        return None
    for a, b in ((0, 1), (1, 0)):
        raw, mul = add.inputs[a], g.made_by(add.inputs[b], "MUL")
        if mul is None or len(mul.inputs) != 2:
            continue
        for c, d in ((0, 1), (1, 0)):
            cast, dim = g.made_by(mul.inputs[c], "CAST"), g.const(mul.inputs[d])
            if cast is None or dim is None:
                continue
            less = g.made_by(cast.inputs[0], "LESS")
            if less is None or less.inputs[0] != raw:
                continue
            zero = g.const(less.inputs[1])
            if zero is not None and zero.size == 1 and zero.item() == 0:
                return raw
    return None


def _guarded_gather(g: Graph, op: Op) -> bool:
    return len(op.inputs) > 1 and _guarded_index(g, op.inputs[1]) is not None


@register_pass
class StripGatherGuards(Pass):
    name, record_key, label = "strip_gather_guards", "gather_guards_removed", "removing the gather guards"
    ensures = (Condition("no LESS/CAST-bool guard feeds a GATHER",
                         lambda g: _matches(g, ("GATHER",), _guarded_gather, "fed by a negative-index guard")),)

    def apply(self, g: Graph) -> int:
        raws = [(op.index, _guarded_index(g, op.inputs[1])) for op in g.ops
                if op.kind == "GATHER" and len(op.inputs) > 1]
        raws = [(i, raw) for i, raw in raws if raw is not None]
        for i, raw in raws:
            g.set_input(i, 1, raw)
        if raws:
            g.drop_dead_ops()
        return len(raws)


# -- fuse_prelu --------------------------------------------------------------------------------

def _prelu_form(g: Graph, add: Op) -> tuple[int, np.ndarray] | None:
    """(x, c) where `add` computes relu(x) + (x − |x|)·c, x NHWC and c a last-axis constant."""
    if len(add.inputs) != 2 or add.options.get("fusedActivationFunction", 0):
        return None
    for a, b in ((0, 1), (1, 0)):
        relu, mul = g.made_by(add.inputs[a], "RELU"), g.made_by(add.inputs[b], "MUL")
        if relu is None or mul is None:
            continue
        x = relu.inputs[0]
        const_t = next((t for t in mul.inputs if _weight(g, t) is not None), None)
        c = None if const_t is None else _weight(g, const_t)
        sub = next((s for s in (g.made_by(t, "SUB") for t in mul.inputs) if s is not None), None)
        if c is None or sub is None or sub.inputs[0] != x:
            continue
        absop, shape = g.made_by(sub.inputs[1], "ABS"), g.tensor(x).shape
        if absop is None or absop.inputs[0] != x or len(shape) != 4 or c.size != shape[-1]:
            continue
        if any(d != 1 for d in g.tensor(const_t).shape[:-1]):
            continue  # not a last-axis (NHWC channel) vector
        return x, c
    return None


@register_pass
class FusePrelu(Pass):
    """Re-fuse PReLUs that onnx2tf emitted as `relu(x) + (x − |x|)·c` (its fallback when it could
    not build a native PReLU) into one PRELU with alpha = 2c, where x is NHWC and c is a constant
    per-channel vector on the last axis (the form the GPU delegate and XNNPACK run natively)."""
    name, record_key, label = "fuse_prelu", "prelu_refused", "re-fusing PReLUs"
    ensures = (Condition("no ADD computes relu(x) + (x - |x|)*c",
                         lambda g: _matches(g, ("ADD",), lambda g, op: _prelu_form(g, op) is not None,
                                            "an unfused PReLU")),)

    def apply(self, g: Graph) -> int:
        fused = 0
        for add in [op for op in g.ops if op.kind == "ADD"]:
            form = _prelu_form(g, add)
            if form is None:
                continue
            x, c = form
            alpha = g.add_const((2.0 * c).astype(np.float32).reshape(1, 1, -1), f"prelu_alpha_{fused}")
            g.replace_op(add.index, "PRELU", [x, alpha], add.outputs)
            fused += 1
        if fused:
            g.drop_dead_ops()
        return fused


# -- add_n_to_add ------------------------------------------------------------------------------

def _float_add_n2(g: Graph, op: Op) -> bool:
    if len(op.inputs) != 2:
        return False
    a, b, out = (g.tensor(t) for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    return {a.type, b.type, out.type} == {F32} and a.shape == b.shape


@register_pass
class AddNToAdd(Pass):
    """Turn each two-input float ADD_N (what onnx2tf makes of an ONNX `Sum`) into ADD: the same
    sum, bit for bit, and cheaper on the XNNPACK interpreter (the attention mesh's 18 backbone
    ADD_Ns took 0.25 ms op by op; as ADDs all 66 residual adds, heads included, take 0.14 ms)."""
    name, record_key, label = "add_n_to_add", "add_n_as_add", "turning ADD_N into ADD"
    ensures = (Condition("no two-input float32 ADD_N remains",
                         lambda g: _matches(g, ("ADD_N",), _float_add_n2, "a two-input float32 ADD_N")),)

    def apply(self, g: Graph) -> int:
        hits = [op.index for op in g.ops if op.kind == "ADD_N" and _float_add_n2(g, op)]
        for i in hits:
            g.replace_op(i, "ADD", options="AddOptions")
        return len(hits)


# -- drop_identity_convs -----------------------------------------------------------------------

def _identity_conv(g: Graph, op: Op) -> bool:
    """A float 1×1 convolution computing x·1 + 0 per channel, not writing a graph output."""
    if len(op.inputs) < 2:
        return False
    xt, ot, opts = g.tensor(op.inputs[0]), g.tensor(op.outputs[0]), op.options
    if ot.index in g.outputs or xt.type != F32 or ot.type != F32 or xt.shape != ot.shape or xt.rank != 4 \
            or not opts or opts.get("fusedActivationFunction") or (opts.get("strideH"), opts.get("strideW")) != (1, 1):
        return False
    w, wshape, c = _weight(g, op.inputs[1]), list(g.tensor(op.inputs[1]).shape), xt.shape[-1]
    if w is None or len(wshape) != 4 or wshape[1:3] != [1, 1]:
        return False
    if op.kind == "DEPTHWISE_CONV_2D" or wshape[-1] == 1:      # per channel: all ones, C of them
        identity = w.size == c and wshape[0 if op.kind == "CONV_2D" else 3] == c and bool(np.all(w == 1.0))
    else:                                                    # full 1×1 conv: the identity matrix
        identity = wshape == [c, 1, 1, c] and np.array_equal(w.reshape(c, c), np.eye(c, dtype=np.float32))
    if not identity:
        return False
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = _weight(g, op.inputs[2])
        return bias is not None and not np.any(bias)
    return True


@register_pass
class DropIdentityConvs(Pass):
    """Remove float 1×1 convolutions that compute x·1 + 0 per channel (depthwise or grouped with
    all-one weights, or a full conv with the identity matrix; zero or no bias, no activation),
    feeding their input to their consumers. The GridSample lowering ends in one: it is how
    onnx2tf learns that the crop is channels-last (see lowering.py)."""
    name, record_key, label = "drop_identity_convs", "identity_convs_removed", "removing identity convolutions"
    ensures = (Condition("no identity 1x1 convolution remains",
                         lambda g: _matches(g, ("CONV_2D", "DEPTHWISE_CONV_2D"), _identity_conv,
                                            "an identity convolution")),)

    def apply(self, g: Graph) -> int:
        rewire: dict[int, int] = {}
        dropped = []
        for op in g.ops:
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D") and _identity_conv(g, op):
                rewire[op.outputs[0]] = rewire.get(op.inputs[0], op.inputs[0])
                dropped.append(op.index)
        if dropped:
            g.remove_ops(dropped, rewire)
            g.drop_dead_ops()
        return len(dropped)


# -- float_hybrid_fc ---------------------------------------------------------------------------

def _hybrid_fc(g: Graph, op: Op) -> bool:
    """A FULLY_CONNECTED of float activations with int8 constant weights (dynamic-range quantisation)."""
    if op.kind != "FULLY_CONNECTED" or len(op.inputs) < 2:
        return False
    x, w, out = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    return x.type == F32 and out.type == F32 and w.type == INT8 and w.const


def _float_fc_version(op: Op) -> int:
    """The op version TFLite's versioning gives a float FULLY_CONNECTED (tflite/tools/versioning/
    op_version.cc): 6 without a bias input, 5 with keep_num_dims, 2 with shuffled weights, else 1."""
    if len(op.inputs) == 2:
        return 6
    if op.options.get("keepNumDims"):
        return 5
    return 2 if op.options.get("weightsFormat") else 1


@register_pass
class FloatHybridFC(Pass):
    """Give each hybrid FULLY_CONNECTED (float input, int8 weights: what dynamic-range quantisation
    makes of a MatMul with a large constant, such as the GridSample lowering's base grids) its
    weights as float32, (q − zero_point)·scale, and float arithmetic. The converter sets one version
    for every op of a kind, the highest any needs: a per-channel hybrid FULLY_CONNECTED is version
    12, above the GPU delegate's 9, so every FULLY_CONNECTED of the model would run on the CPU. With
    no hybrid one left, the version becomes the highest a float one needs. Not exact: the hybrid
    kernel quantises its input per batch row (asymmetric int8), the float one reads it as it is, so
    the outputs move by up to that rounding — toward the float model — and the parity gate judges them."""
    name, record_key, label, exact = "float_hybrid_fc", "hybrid_fc_made_float", "making hybrid FCs float", False
    ensures = (Condition("no FULLY_CONNECTED has int8 weights and float activations",
                         lambda g: _matches(g, ("FULLY_CONNECTED",), _hybrid_fc, "hybrid")),)

    def apply(self, g: Graph) -> int:
        hybrid = [op for op in g.ops if _hybrid_fc(g, op)]
        for op in hybrid:
            w = g.dequantized(op.inputs[1])
            if w is None:
                raise ConversionError(STEP, f"op {op.index} (FULLY_CONNECTED): int8 weights without a scale")
            g.set_const(op.inputs[1], w)
            opts = g.subgraph.operators[op.index].builtinOptions
            if opts is not None and hasattr(opts, "asymmetricQuantizeInputs"):
                opts.asymmetricQuantizeInputs = False
        if hybrid:
            g.changed()
            fcs = [op for op in g.ops if op.kind == "FULLY_CONNECTED"]
            if all(g.tensor(t).type == F32 for op in fcs for t in (*op.inputs[:2], op.outputs[0])):
                g.set_version("FULLY_CONNECTED", max(_float_fc_version(op) for op in fcs))
        return len(hybrid)


# -- rename_io ---------------------------------------------------------------------------------

def _spec_output(g: Graph, outputs: list[str]) -> dict[int, int]:
    """Graph output tensor → position in the spec. The k-th ONNX output is the signature's
    "output_k" (or its ONNX name, which onnx2tf keeps for some graphs), or a tensor named
    "Identity_k" ("Identity" for k=0) or "[Stateful]PartitionedCall:k"; graph outputs may be
    listed in another order, so names, not positions, decide."""
    order: dict[int, int] = {}
    for _, sig_outputs in g.signatures().values():
        for name, t in sig_outputs:
            m = re.fullmatch(r"output_(\d+)", name)
            if m:
                order[t] = int(m.group(1))
            elif name in outputs:
                order[t] = outputs.index(name)
    out = {}
    for pos, t in enumerate(g.outputs):
        m = re.fullmatch(r"Identity(?:_(\d+))?|(?:Stateful)?PartitionedCall:(\d+)", g.tensor(t).name)
        k = order.get(t)
        if k is None and m:
            k = int(m.group(1) or m.group(2) or 0)
        out[t] = pos if k is None else k
    return out


@register_pass
class RenameIO(Pass):
    """Give graph inputs/outputs the spec names (onnx2tf names outputs Identity, Identity_1, …) and
    make the model's only signature `serving_default`: spec names → those tensors, in spec order."""
    name, record_key, label, in_pipeline = "rename_io", "io_renamed", "naming inputs and outputs", False

    def __init__(self, inputs: list[str], outputs: list[str]):
        self.inputs, self.outputs = list(inputs), list(outputs)
        n_in, n_out = len(self.inputs), len(self.outputs)
        self.requires = (Condition(f"the graph has the spec's {n_in} input(s) and {n_out} output(s)",
                                   lambda g: [] if (len(g.inputs), len(g.outputs)) == (n_in, n_out) else
                                   [f"model has {len(g.inputs)} inputs/{len(g.outputs)} outputs, "
                                    f"spec declares {n_in}/{n_out}"]),)
        self.ensures = (Condition("input/output names equal the spec's", self._names_differ),
                        Condition(f"one {SIGNATURE_KEY} signature maps the spec names to the graph's inputs "
                                  f"and outputs, in spec order", self._signature_differs))

    def _names_differ(self, g: Graph) -> list[str]:
        ins, outs = [g.tensor(t).name for t in g.inputs], [g.tensor(t).name for t in g.outputs]
        return [] if ins == self.inputs and sorted(outs) == sorted(self.outputs) else \
            [f"inputs {ins}, outputs {outs}; spec: {self.inputs}, {self.outputs}"]

    def _signature_differs(self, g: Graph) -> list[str]:
        by_name = {g.tensor(t).name: t for t in g.outputs}
        want = {SIGNATURE_KEY: (list(zip(self.inputs, g.inputs)), [(n, by_name.get(n, -1)) for n in self.outputs])}
        got = g.signatures()
        return [] if got == want else [f"signatures {got}"]

    def apply(self, g: Graph) -> int:
        for t, name in zip(g.inputs, self.inputs):
            g.rename(t, name)
        for t, k in _spec_output(g, self.outputs).items():
            if k >= len(self.outputs):
                raise ConversionError(STEP, f"output {g.tensor(t).name!r} has no spec name")
            g.rename(t, self.outputs[k])
        named = {g.tensor(t).name: t for t in g.outputs}
        if sorted(named) != sorted(self.outputs):
            got = [g.tensor(t).name for t in g.outputs]
            raise ConversionError(STEP, f"graph outputs got the spec names {got}: each of {self.outputs} must name one")
        g.set_signature(SIGNATURE_KEY, list(zip(self.inputs, g.inputs)), [(n, named[n]) for n in self.outputs])
        return len(self.inputs) + len(self.outputs)


@register_pass
class NchwOutputs(Pass):
    """A TRANSPOSE (0, 3, 1, 2) after each graph output named in `shapes` (spec name → spec shape,
    4-D) that is that shape channels-last; the transposed tensor becomes the output (same name,
    signature updated), the channels-last one is renamed `<name>/nhwc`."""
    name, record_key, label, in_pipeline = "nchw_outputs", "outputs_made_nchw", "outputs back to NCHW", False

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.shapes = {k: tuple(v) for k, v in shapes.items() if len(v) == 4}
        self.ensures = (Condition("every 4-D output has its spec shape", self._shapes_differ),)

    def _shapes_differ(self, g: Graph) -> list[str]:
        return [f"output {g.tensor(t).name} is {list(g.tensor(t).shape)}, spec {list(self.shapes[g.tensor(t).name])}"
                for t in g.outputs if g.tensor(t).name in self.shapes
                and tuple(g.tensor(t).shape) != self.shapes[g.tensor(t).name]]

    def apply(self, g: Graph) -> int:
        from ai_edge_litert import schema_py_generated as schema
        outputs, renamed = list(g.outputs), {}
        for pos, t in enumerate(outputs):
            name, shape = g.tensor(t).name, tuple(g.tensor(t).shape)
            want = self.shapes.get(name)
            if want is None or shape == want or shape != (want[0], want[2], want[3], want[1]):
                continue
            perm = g.add_const(np.array([0, 3, 1, 2], np.int32), f"{name}/nchw_perm")
            new = schema.TensorT()
            new.shape, new.type, new.buffer, new.name = list(want), g.subgraph.tensors[t].type, 0, name.encode()
            g.subgraph.tensors.append(new)
            out = len(g.subgraph.tensors) - 1
            g.rename(t, f"{name}/nhwc")
            g.subgraph.operators.append(g.new_op("TRANSPOSE", [t, perm], [out], "TransposeOptions"))
            outputs[pos], renamed[name] = out, out
        if renamed:
            g.subgraph.outputs = outputs
            g.changed()
            for key, (ins, outs) in g.signatures().items():
                g.set_signature(key, ins, [(n, renamed.get(n, t)) for n, t in outs])
        return len(renamed)


# -- the functions every caller used before the pass objects -----------------------------------

def strip_gather_guards(buf: bytes) -> tuple[bytes, int]:
    return StripGatherGuards()(buf)


def fuse_prelu(buf: bytes) -> tuple[bytes, int]:
    return FusePrelu()(buf)


def add_n_to_add(buf: bytes) -> tuple[bytes, int]:
    return AddNToAdd()(buf)


def drop_identity_convs(buf: bytes) -> tuple[bytes, int]:
    return DropIdentityConvs()(buf)


def float_hybrid_fc(buf: bytes) -> tuple[bytes, int]:
    return FloatHybridFC()(buf)


def rename_io(buf: bytes, inputs: list[str], outputs: list[str]) -> bytes:
    return RenameIO(inputs, outputs)(buf)[0]


def nchw_outputs(buf: bytes, shapes: dict[str, tuple[int, ...]]) -> tuple[bytes, int]:
    return NchwOutputs(shapes)(buf)


def op_histogram(buf: bytes) -> dict[str, int]:
    """Op kind → count (custom ops as "CUSTOM:<name>")."""
    return load_graph(buf).histogram()
