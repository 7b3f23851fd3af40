"""The GPU delegate's rules, one function per op family: what `converters.gpu_check` applies to
every op of a .tflite (rule ids, max op versions, tensor types, operand requirements, and how to
get a rejected op back onto the GPU). Sources are named in gpu_check's docstring. One module on
purpose (~600 lines): it mirrors the delegate's parser table op by op, and a rule is easiest to
check against its source when all of them sit together."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from runtime.tflite import Graph, Op, Tensor, type_name

# Rule ids (Flag.rule). One flag per (op, rule); an op can carry several.
RULES = {
    "custom-op": "CUSTOM ops never run on the delegate in a Meshport artifact",
    "unsupported-op": "the builtin op has no GPU delegate parser",
    "op-version": "the op's version is above the delegate's maximum for it",
    "tensor-rank": "the delegate handles tensors of at most 4 dimensions",
    "tensor-type": "runtime inputs / outputs must be float32/float16 (int8/uint8 when quantized) "
                   "except where an op allows int32 or bool",
    "operands": "the op needs a given number of runtime inputs, the rest constant",
    "fused-activation": "fused activation must be NONE/RELU/RELU_N1_TO_1/RELU6/TANH",
    "broadcast": "ADD/MUL broadcasting between tensors of different rank is limited; the output shape must be "
                 "one input's (no two-sided broadcast)",
    "const-batch": "a constant operand of an elementwise op must have batch 1 (its first dimension, 2-D to 4-D)",
    "gather": "GATHER: runtime float params, 1-D int32 indices, batch_dims 0",
    "cast": "CAST: only bool->float, float->bool and float32<->int32",
    "logical-op": "comparisons: float inputs, bool output consumed only by one CAST/SELECT to float",
    "select": "SELECT/SELECT_V2: bool or float condition, float values, limited broadcast",
    "cumsum": "CUMSUM: float input/output and a constant int32 axis",
    "slice": "SLICE/STRIDED_SLICE: 3-D/4-D input, constant begin/end/strides, no ellipsis/new-axis/shrink masks",
    "pad": "PAD: constant 3x2 or 4x2 paddings; MIRROR_PAD reflect only",
    "reduce-axes": "reductions need constant int32 axes",
    "shape-input": "RESHAPE/TRANSPOSE/TILE: the shape/permutation/multiples input must be constant",
    "conv": "convolution/pooling parameters and shapes",
    "fully-connected": "FULLY_CONNECTED weights format, inputs and keep_num_dims",
    "prelu": "PRELU alpha must be a constant per-channel or HWC tensor matching the input",
    "op-params": "other op options the delegate rejects",
    "dequantize": "DEQUANTIZE of non-fp16 constants needs quantized-op support; int16 never",
}

# Max op version per supported builtin (model_builder.cc, IsSupported of each parser); None: not checked.
_ELEMENTWISE_1 = ("ABS", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC", "NEG", "RSQRT", "SIGN", "SIN",
                  "SQRT", "SQUARE", "TANH")
_ELEMENTWISE_2 = ("ADD", "DIV", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER", "GREATER_EQUAL", "LESS",
                  "LESS_EQUAL", "LOGICAL_AND", "MAXIMUM", "MINIMUM", "MUL", "NOT_EQUAL", "POW",
                  "SQUARED_DIFFERENCE", "SUB")
_LOGICAL = ("GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL")
MAX_VERSIONS: dict[str, int | None] = {
    **{name: 2 for name in _ELEMENTWISE_1 + _ELEMENTWISE_2},
    "MUL": 3, "ADD_N": 2,
    "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "BATCH_MATMUL": None, "CAST": None, "CONCATENATION": 2,
    "CONV_2D": 6, "CUMSUM": 1, "DENSIFY": 1, "DEPTHWISE_CONV_2D": 6, "DEPTH_TO_SPACE": None, "DEQUANTIZE": 3,
    "FULLY_CONNECTED": 9, "GATHER": 1, "HARD_SWISH": None, "LSTM": 4, "MEAN": None, "MIRROR_PAD": 2,
    "ONE_HOT": 1, "PACK": None, "PAD": 2, "PADV2": 2, "PRELU": 1, "QUANTIZE": 2, "REDUCE_MAX": None,
    "REDUCE_MIN": None, "REDUCE_PROD": None, "SUM": None, "RELU": 2, "RELU6": 2, "RELU_0_TO_1": 2,
    "RELU_N1_TO_1": 2, "LEAKY_RELU": 2, "RESHAPE": 1, "RESIZE_BILINEAR": 3, "RESIZE_NEAREST_NEIGHBOR": 3,
    "SELECT": 1, "SELECT_V2": 1, "SLICE": 2, "SOFTMAX": 2, "SPACE_TO_DEPTH": 2, "SPLIT": None, "SPLIT_V": None,
    "STRIDED_SLICE": 4, "TILE": None, "TRANSPOSE": 4, "TRANSPOSE_CONV": 3, "UNPACK": None,
}
_QUANT_OPS = ("DEQUANTIZE", "QUANTIZE")  # parsed only with quantized-op support (on by default)

# How to get an op the delegate lacks back onto the GPU (Meshport idioms, DESIGN.md §6).
_HINTS = {
    "ATAN2": "compute cos/sin by normalising the vector instead of the angle",
    "GATHER_ND": "flatten the indexed dimensions and use one GATHER with 1-D int32 indices",
    "SCATTER_ND": "write the update as a CONCATENATION followed by a GATHER with constant 1-D indices",
    "TOPK_V2": "move the top-k out of the GPU graph (post-process on the CPU)",
    "ARG_MAX": "move the argmax out of the GPU graph, or use a soft-argmax (SOFTMAX + weighted SUM)",
    "ARG_MIN": "move the argmin out of the GPU graph, or use a soft-argmin",
    "CEIL": "use FLOOR of the negated value (ceil(x) = -floor(-x))",
    "ROUND": "use FLOOR(x + 0.5)",
    "WHERE": "use a float mask instead of computing indices",
}

F32, F16, I32, U8, I64, BOOL, I16, I8 = 0, 1, 2, 3, 4, 6, 7, 9
_FLOAT = (F32, F16)
_ACT_SIGN_BIT = 5


@dataclass(frozen=True)
class Flag:
    op_index: int
    op_type: str      # builtin name, or "CUSTOM:<name>"
    version: int
    rule: str         # a key of RULES
    reason: str       # one actionable sentence, starting with the op name

    def __str__(self) -> str:
        return f"op #{self.op_index} v{self.version} [{self.rule}] {self.reason}"


# -- the rules ----------------------------------------------------------------------------------------------------

class _Ctx:
    """One op as the delegate sees it: fp16 DEQUANTIZE outputs replaced by their fp16 constants."""

    def __init__(self, g: Graph, op: Op, folded: dict[int, int]):
        self.g, self.op = g, op
        self.ins = [None if (j < 0 or j >= len(g.tensors)) else g.tensors[folded.get(j, j)] for j in op.inputs]
        self.outs = [g.tensors[j] for j in op.outputs]
        self.flags: list[tuple[str, str]] = []

    def inp(self, i: int) -> Tensor | None:
        return self.ins[i] if i < len(self.ins) else None

    @property
    def present(self) -> list[Tensor]:
        return [t for t in self.ins if t is not None]

    @property
    def runtime(self) -> list[Tensor]:
        return [t for t in self.present if not t.const]

    @property
    def consts(self) -> list[Tensor]:
        return [t for t in self.present if t.const]

    def opt(self, key: str, default: Any = 0) -> Any:
        v = self.op.options.get(key, default)
        return default if v is None else v

    def flag(self, rule: str, text: str) -> None:
        if rule not in RULES:  # pragma: no cover - programming error
            raise KeyError(rule)
        for i, (r, reason) in enumerate(self.flags):
            if r == rule:  # one flag per rule: a second finding extends the sentence
                self.flags[i] = (r, f"{reason}; also {text}")
                return
        self.flags.append((rule, f"{self.op.kind}: {text}"))


def _dims(t: Tensor | None) -> str:
    return "none" if t is None else f"{t.rank}-D {list(t.shape)}"


def _types(ts: Iterable[Tensor]) -> str:
    return ", ".join(sorted({t.type_name for t in ts}))


def _operands(c: _Ctx, runtime: int, outputs: int = 1, const: int | None = None, what: str = "") -> bool:
    r, k = len(c.runtime), len(c.consts)
    if r == runtime and len(c.outs) == outputs and (const is None or k == const):
        return True
    want = f"{runtime} runtime input(s)" + (f" and {const} constant(s)" if const is not None else "")
    c.flag("operands", f"needs {want} and {outputs} output(s){what} (got {r} runtime, {k} constant input(s), "
                       f"{len(c.outs)} output(s))")
    return False


def _activation(c: _Ctx) -> None:
    if c.opt("fusedActivationFunction") == _ACT_SIGN_BIT:
        c.flag("fused-activation", "fused activation SIGN_BIT is not supported; use NONE, RELU, RELU_N1_TO_1, "
                                   "RELU6 or TANH")


def _broadcast_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Standard (non-enhanced) broadcast rule the delegate applies at runtime."""
    if len(a) <= 1 or len(b) <= 1 or len(a) == len(b):
        return True
    lo, sh = (a, b) if len(a) >= len(b) else (b, a)
    if len(lo) == 4 and len(sh) == 3 and lo[0] == 1:
        return True
    if len(lo) == 4 and len(sh) == 2 and lo[0] == 1 and tuple(sh) == (1, 1):
        return True
    return len(lo) == 4 and len(sh) == 2 and lo[0] == sh[0] and lo[3] == sh[1]


def _check_two_arg(c: _Ctx) -> None:
    r, k = len(c.runtime), len(c.consts)
    if len(c.present) != 2 or not ((r == 2 and k == 0) or (r == 1 and k == 1)) or len(c.outs) != 1:
        c.flag("operands", f"needs two inputs, at least one of them a runtime tensor, and one output "
                           f"(got {r} runtime, {k} constant input(s)); fold all-constant arithmetic offline")
        return
    a, b = c.ins[0], c.ins[1]
    if r == 2 and a.index == b.index and c.op.kind not in ("ADD", "MUL"):
        c.flag("operands", "the same tensor on both inputs is only supported for ADD and MUL")
    name, out = c.op.kind, c.outs[0]
    if out.shape not in (a.shape, b.shape) and a.shape and b.shape:
        # Both inputs broadcast (e.g. [1,K] + [2,1] -> [2,K]): the delegate's elementwise kernels
        # broadcast one input at most, and LiteRT's GPU accelerator computes this wrongly.
        c.flag("broadcast", f"both inputs broadcast ({list(a.shape)} with {list(b.shape)} -> {list(out.shape)}): "
                            f"the output shape must be one input's; tile or concatenate one input to the output "
                            f"shape first (an outer product is a CONV_2D/matmul)")
    for t in c.consts:
        if t.rank in (2, 3) and t.shape[0] > 1 or t.rank == 4 and t.shape[0] > 1:
            c.flag("const-batch", f"constant operand {list(t.shape)} has a batch of {t.shape[0]}: the delegate "
                                  f"reads constants without their batch (the GPU uses its first row only); lay "
                                  f"it out as [1, ...] (e.g. side by side in one row)")
    if name in ("ADD", "MUL") and not _broadcast_ok(a.shape, b.shape):
        c.flag("broadcast", f"cannot broadcast {list(a.shape)} with {list(b.shape)}: only 4-D with 3-D (batch 1), "
                            f"4-D with [1,1] or 4-D [b,h,w,c] with [b,c]; reshape both to the same rank")
    _activation(c)


def _check_logical(c: _Ctx) -> None:
    g, out = c.g, c.outs[0] if c.outs else None
    if out is None:
        return
    producers, consumers = g.producers().get(out.index, []), g.consumers().get(out.index, [])
    ok = len(producers) == 1 and len(consumers) == 1
    nxt = consumers[0] if ok else None
    if ok:
        dst = g.tensors[nxt.outputs[0]] if nxt.outputs else None
        ok = nxt.kind in ("CAST", "SELECT", "SELECT_V2") and dst is not None and dst.type in _FLOAT
    if not ok:
        got = ", ".join(f"{o.kind}->{g.tensors[o.outputs[0]].type_name}" if o.outputs else o.kind for o in consumers)
        got = got or ("only a model output" if out.index in g.outputs else "none")
        c.flag("logical-op", f"a comparison's bool output must feed exactly one CAST or SELECT/SELECT_V2 whose "
                             f"output is float (got consumers: {got}); cast the result to float right away")


def _check_cast(c: _Ctx) -> None:
    if not _operands(c, 1):
        return
    src, dst = c.runtime[0].type, c.outs[0].type
    pair = f"{type_name(src)}->{type_name(dst)}"
    if src == BOOL and dst in _FLOAT:
        g, t_in, t_out = c.g, c.op.inputs[0], c.op.outputs[0]
        if len(g.producers().get(t_in, [])) != 1 or len(g.consumers().get(t_in, [])) != 1:
            c.flag("cast", f"bool->float needs a bool input produced by one op and consumed only by this CAST "
                           f"(got {len(g.producers().get(t_in, []))} producer(s), "
                           f"{len(g.consumers().get(t_in, []))} consumer(s))")
        elif len(g.consumers().get(t_out, [])) != 1:
            c.flag("cast", "bool->float is done on the CPU unless the float result feeds exactly one op "
                           f"(got {len(g.consumers().get(t_out, []))} consumer(s)"
                           f"{', and it is a model output' if t_out in g.outputs else ''})")
        return
    if src in _FLOAT and dst == BOOL:
        return
    if src in (F32, I32) and dst in (F32, I32):
        return
    c.flag("cast", f"{pair} is not supported; the delegate casts only bool->float, float->bool and "
                   f"float32<->int32 (build 0/1 masks in float, e.g. CAST(LESS(x, y)) to float32, never to int32)")


def _check_gather(c: _Ctx) -> None:
    params, idx = c.inp(0), c.inp(1)
    problems = []
    batch_dims, axis = int(c.opt("batchDims")), int(c.opt("axis"))
    if params is None or idx is None or len(c.outs) != 1:
        c.flag("operands", "needs params and indices inputs and one output")
        return
    if params.const:
        problems.append("constant params")
    if idx.rank != 1 or idx.type != I32:
        problems.append(f"{idx.rank}-D {idx.type_name} indices")
    if batch_dims != 0:
        problems.append(f"batch_dims={batch_dims}")
    rank = params.rank
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1) or rank > 4 or rank == 0:
        problems.append(f"axis={axis} of {rank}-D params")
    if params.type not in _FLOAT + (I8, U8) or (c.outs[0].type not in _FLOAT + (I8, U8)):
        problems.append(f"{params.type_name} params")
    if problems:
        c.flag("gather", "params must be a runtime float tensor of rank <= 4, indices 1-D int32 (constant or "
                         f"runtime) and batch_dims 0 (got {', '.join(problems)}); flatten the gathered dims and "
                         "use one 1-D index vector")


def _check_select(c: _Ctx) -> None:
    if len(c.present) != 3 or len(c.outs) != 1:
        c.flag("operands", f"needs 3 inputs and 1 output (got {len(c.present)} and {len(c.outs)})")
        return
    cond, a, b = c.ins
    out = c.outs[0]
    problems = []
    if cond.type not in (BOOL, F16, F32):
        problems.append(f"{cond.type_name} condition")
    if cond.rank:
        off = out.rank - cond.rank
        if off < 0 or any(d != out.shape[off + i] and d != 1 for i, d in enumerate(cond.shape)):
            problems.append(f"condition {list(cond.shape)} does not broadcast to {list(out.shape)}")
    for what, t in (("if", a), ("else", b)):
        if t.rank and t.shape != out.shape and (t.rank > 1 or t.shape[0] > 1):
            problems.append(f"{what} {list(t.shape)} is neither scalar nor the output shape {list(out.shape)}")
        if not t.const and t.rank == 2:
            problems.append(f"runtime 2-D {what} value")
    if problems:
        hint = "; use 3-D/4-D tensors or blend with a float mask" if any("2-D" in p for p in problems) else ""
        c.flag("select", f"condition must be bool/float broadcastable to the output, values scalar or output-shaped "
                         f"and not runtime 2-D (got {'; '.join(problems)}){hint}")


def _check_cumsum(c: _Ctx) -> None:
    x, axis = c.inp(0), c.inp(1)
    if len(c.present) != 2 or x is None or axis is None:
        c.flag("operands", "needs an input and an axis")
        return
    if x.type not in _FLOAT or c.outs[0].type != x.type or axis.type != I32 or not axis.const:
        c.flag("cumsum", f"input/output must be float32/float16 and the axis a constant int32 (got "
                         f"{x.type_name} input, {'constant' if axis.const else 'runtime'} {axis.type_name} axis); "
                         f"accumulate in float (exact in fp16 only up to 2048)")


def _check_const_int32(c: _Ctx, slot: int, rule: str, what: str) -> bool:
    t = c.inp(slot)
    if t is None or not t.const or t.type != I32:
        got = "missing" if t is None else f"{'constant' if t.const else 'runtime'} {t.type_name}"
        c.flag(rule, f"the {what} input must be a constant int32 tensor (got {got})")
        return False
    return True


def _check_reduce(c: _Ctx) -> None:
    if c.op.kind == "MEAN":
        _operands(c, 1, const=1)
    else:
        _operands(c, 1)
    _check_const_int32(c, 1, "reduce-axes", "axes")


def _check_slice(c: _Ctx) -> None:
    name = c.op.kind
    x = c.inp(0)
    need = 4 if name == "STRIDED_SLICE" else 3
    if len(c.ins) < need or x is None:
        c.flag("operands", f"needs {need} inputs (got {len(c.ins)})")
        return
    problems = []
    if x.rank not in (3, 4):
        problems.append(f"{x.rank}-D input")
    if name == "STRIDED_SLICE":
        for key, label in (("ellipsisMask", "ellipsis_mask"), ("newAxisMask", "new_axis_mask"),
                           ("shrinkAxisMask", "shrink_axis_mask")):
            if c.opt(key):
                problems.append(f"{label}={c.opt(key)}")
        strides = c.inp(3)
        if strides is not None and strides.data is not None and np.any(strides.data <= 0):
            problems.append(f"strides {strides.data.tolist()} (reverse or zero)")
    for slot in range(1, need):
        t = c.inp(slot)
        if t is None or not t.const:
            problems.append(f"runtime input {slot}")
        elif t.data is not None and t.data.size not in (3, 4):
            problems.append(f"{t.data.size} values in input {slot}")
    if problems:
        c.flag("slice", "input must be 3-D or 4-D with constant begin/end/strides (3 or 4 values), positive "
                        "strides and no ellipsis/new-axis/shrink-axis masks (got " + ", ".join(problems) +
                        "); reshape to 3-D/4-D around the slice and RESHAPE away the sliced axis")


def _check_pad(c: _Ctx) -> None:
    if c.op.kind == "MIRROR_PAD" and c.opt("mode") != 0:
        c.flag("pad", "only REFLECT mirror padding is supported (got SYMMETRIC)")
    _operands(c, 1, what=" (paddings constant)")
    p = c.inp(1)
    if p is None or not p.const or p.rank != 2 or p.shape[0] not in (3, 4) or p.shape[1] != 2:
        c.flag("pad", f"paddings must be a constant 4x2 or 3x2 tensor (got {_dims(p)}"
                      f"{'' if p is None or p.const else ', runtime'})")


def _check_conv(c: _Ctx) -> None:
    name = c.op.kind
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        _operands(c, 1)
        if min(c.opt("filterHeight"), c.opt("filterWidth")) <= 0 or min(c.opt("strideH"), c.opt("strideW")) <= 0:
            c.flag("conv", "filter and stride sizes must be positive")
        _activation(c)
        return
    if len(c.runtime) > 2 or len(c.outs) != 1:
        c.flag("operands", f"needs 1 or 2 runtime inputs and one output (got {len(c.runtime)} runtime inputs)")
    if min(c.opt("strideH", 1), c.opt("strideW", 1)) <= 0:
        c.flag("conv", "strides must be positive")
    if name == "TRANSPOSE_CONV":
        return
    if min(c.opt("dilationHFactor", 1), c.opt("dilationWFactor", 1)) <= 0:
        c.flag("conv", "dilations must be positive")
    _activation(c)
    if name == "DEPTHWISE_CONV_2D":
        x, w, out = c.inp(0), c.inp(1), c.outs[0] if c.outs else None
        bias = c.inp(2)
        if x is None or w is None or out is None or x.rank != 4 or w.rank != 4 or out.rank != 4:
            c.flag("conv", f"input, filter and output must be 4-D (got {_dims(x)}, {_dims(w)}, {_dims(out)})")
            return
        dm = int(c.opt("depthMultiplier", 1))
        problems = []
        if x.shape[0] != out.shape[0]:
            problems.append("input and output batch differ")
        if w.shape[3] != out.shape[3]:
            problems.append("filter channels != output channels")
        if out.shape[3] != x.shape[3] * dm:
            problems.append("output channels != input channels * depth_multiplier")
        if bias is not None and int(np.prod(bias.shape)) != out.shape[3]:
            problems.append("bias size != output channels")
        if dm != 1 and x.shape[3] != 1:
            problems.append(f"depth_multiplier={dm} with {x.shape[3]} input channels")
        if problems:
            c.flag("conv", "; ".join(problems))


def _check_fully_connected(c: _Ctx) -> None:
    problems = []
    if c.opt("weightsFormat") != 0:
        problems.append("shuffled weights format")
    if len(c.runtime) > 2:
        problems.append(f"{len(c.runtime)} runtime inputs")
    x = c.inp(0)
    if x is not None and x.const:
        problems.append("constant input")
    if c.opt("keepNumDims", False) and x is not None and c.outs and x.rank != c.outs[0].rank:
        problems.append("keep_num_dims with a rank change")
    if problems:
        c.flag("fully-connected", f"needs the default weights format, a runtime input, at most 2 runtime inputs "
                                  f"and keep_num_dims only without a rank change (got {', '.join(problems)})")
    _activation(c)


def _check_prelu(c: _Ctx) -> None:
    x, alpha = c.inp(0), c.inp(1)
    if x is None or alpha is None or x.const:
        c.flag("operands", "needs a runtime input and an alpha tensor")
        return
    if not alpha.const:
        c.flag("prelu", "alpha must be a constant")
        return
    chans = x.shape[-1] if x.rank else 1
    linear = alpha.rank >= 1 and all(d == 1 for d in alpha.shape[:-1]) and alpha.shape[-1] == chans
    bhwc = {1: (1, 1, 1), 2: (1, 1, x.shape[-1]), 3: (1,) + x.shape[1:], 4: x.shape[1:]}.get(x.rank)
    hwc = alpha.shape[-3:] if alpha.rank >= 3 else (1,) * (3 - alpha.rank) + alpha.shape
    if not linear and (bhwc is None or tuple(hwc) != tuple(bhwc)):
        c.flag("prelu", f"alpha must have one value per channel or match the input's HxWxC "
                        f"(got alpha {list(alpha.shape)} for input {list(x.shape)})")


def _check_one_hot(c: _Ctx) -> None:
    idx = c.inp(0)
    if idx is None or len(c.ins) != 4:
        c.flag("operands", "needs indices, depth, on and off inputs")
        return
    problems = []
    if idx.type != I32:
        problems.append(f"{idx.type_name} indices")
    axis = c.opt("axis", -1)
    if axis != -1 and (not idx.rank or axis != idx.shape[-1]):
        problems.append(f"axis={axis}")
    for i in range(max(idx.rank - 1, 0)):
        if not (idx.rank > 3 and i == 0) and idx.shape[i] != 1:
            problems.append(f"non-singleton index dim {i}")
    for slot in (2, 3):
        t = c.inp(slot)
        if t is None or t.type != F32 or not t.const or t.rank > 1 or (t.rank == 1 and t.shape[0] > 1):
            problems.append(f"on/off value {slot} not a constant float32 scalar")
    if problems:
        c.flag("op-params", "indices must be int32 with only batch/last dims non-singleton, axis -1, on/off "
                            f"constant float32 scalars (got {', '.join(problems)})")


def _check_misc(c: _Ctx) -> None:
    name = c.op.kind
    if name in ("RESHAPE", "TRANSPOSE", "TILE"):
        what = {"RESHAPE": "shape", "TRANSPOSE": "permutation", "TILE": "multiples"}[name]
        if len(c.runtime) != 1 or len(c.outs) != 1:
            c.flag("shape-input", f"needs exactly one runtime input; the {what} must be a constant "
                                  f"(got {len(c.runtime)} runtime inputs)")
        if name == "TRANSPOSE":
            perm = c.inp(1)
            if perm is not None and perm.const and int(np.prod(perm.shape)) not in (2, 3, 4):
                c.flag("shape-input", f"permutation must have 2, 3 or 4 entries (got {list(perm.shape)})")
    elif name == "SOFTMAX":
        if float(c.opt("beta", 1.0)) != 1.0:
            c.flag("op-params", f"beta must be 1 (got {c.opt('beta')}); scale the logits with a MUL instead")
    elif name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        _operands(c, 1, what=" (size constant)")
        if name == "RESIZE_BILINEAR" and c.opt("alignCorners", False) and c.opt("halfPixelCenters", False):
            c.flag("op-params", "align_corners and half_pixel_centers cannot both be set")
    elif name in ("SPACE_TO_DEPTH", "DEPTH_TO_SPACE"):
        _operands(c, 1)
        if int(c.opt("blockSize")) <= 1:
            c.flag("op-params", f"block_size must be > 1 (got {c.opt('blockSize')})")
    elif name in ("HARD_SWISH", "QUANTIZE"):
        _operands(c, 1)
    elif name == "ADD_N":
        if len(c.present) != 2:
            c.flag("operands", f"ADD_N is supported with 2 inputs only (got {len(c.present)}); chain ADDs")
        else:
            _check_two_arg(c)
    elif name == "BATCH_MATMUL":
        if len(c.present) != 2 or len(c.outs) != 1:
            c.flag("operands", "needs 2 inputs and 1 output")
        elif len(c.runtime) == 1 and (not c.ins[1].const or c.ins[1].rank != 2):
            c.flag("operands", "with one runtime input the second must be a constant 2-D matrix")
        elif not c.runtime:
            c.flag("operands", "needs at least one runtime input")
    elif name == "CONCATENATION":
        _activation(c)
    elif name == "DENSIFY":
        _operands(c, 0)


def _check_dequantize(c: _Ctx, allow_quant_ops: bool) -> None:
    src = c.inp(0)
    if not allow_quant_ops:
        c.flag("dequantize", "only DEQUANTIZE of fp16 constants is folded; quantized ops are disabled")
        return
    if len(c.present) != 1 or len(c.outs) != 1:
        c.flag("operands", "needs 1 input and 1 output")
    elif src.type == I16:
        c.flag("dequantize", "int16 dequantization is not supported")


def _allowed_types(name: str, allow_quant_ops: bool) -> tuple[set[int], set[int]]:
    ins, outs = {F32, F16}, {F32, F16}
    if allow_quant_ops:
        ins |= {I8, U8}
        outs |= {I8, U8}
    if name in _LOGICAL:
        outs.add(BOOL)
    if name == "CAST":
        ins |= {BOOL, F32, I32}
        outs |= {F32, I32, BOOL}
    if name == "ONE_HOT":
        ins.add(I32)
    if name in ("SELECT", "SELECT_V2"):
        ins.add(BOOL)
    if name == "LOGICAL_AND":
        ins.add(BOOL)
        outs.add(BOOL)
    if name == "GATHER":
        ins.add(I32)
    return ins, outs


_TYPE_RULE = {"GATHER": "gather", "CAST": "cast", "SELECT": "select", "SELECT_V2": "select",
              "CUMSUM": "cumsum", **{n: "logical-op" for n in _LOGICAL}}


def _check_types(c: _Ctx, allow_quant_ops: bool) -> None:
    """The delegate's tensor filter: rank <= 4 everywhere, allowed types on runtime inputs and on outputs."""
    name = c.op.kind
    big = list({t.index: t for t in c.present + c.outs if t.rank >= 5}.values())
    if big:
        c.flag("tensor-rank", f"tensors must have at most 4 dimensions (got {', '.join(_dims(t) for t in big)}); "
                              f"fold a dimension with RESHAPE")
    ins, outs = _allowed_types(name, allow_quant_ops)
    bad_in = [t for t in c.runtime if t.type not in ins]
    bad_out = [t for t in c.outs if t.type not in outs]
    if not bad_in and not bad_out:
        return
    got = []
    if bad_in:
        got.append(f"{_types(bad_in)} runtime input")
    if bad_out:
        got.append(f"{_types(bad_out)} output")
    allowed_in = "/".join(type_name(t) for t in sorted(ins))
    allowed_out = "/".join(type_name(t) for t in sorted(outs))
    hint = ("; the delegate has no integer arithmetic: keep integer math in float (exact up to 2048 in fp16) and "
            "CAST float32->int32 only right before a GATHER" if any(t.type == I32 for t in bad_in + bad_out) else "")
    c.flag(_TYPE_RULE.get(name, "tensor-type"),
           f"runtime inputs must be {allowed_in} and outputs {allowed_out} (got {' and '.join(got)}){hint}")


_OP_CHECKS: dict[str, Callable[[_Ctx], None]] = {
    **{n: _check_two_arg for n in _ELEMENTWISE_2},
    **{n: (lambda c: _operands(c, 1, const=0)) for n in _ELEMENTWISE_1},
    "CAST": _check_cast, "GATHER": _check_gather, "SELECT": _check_select, "SELECT_V2": _check_select,
    "CUMSUM": _check_cumsum, "MEAN": _check_reduce, "SUM": _check_reduce, "REDUCE_MAX": _check_reduce,
    "REDUCE_MIN": _check_reduce, "REDUCE_PROD": _check_reduce, "SLICE": _check_slice, "STRIDED_SLICE": _check_slice,
    "PAD": _check_pad, "PADV2": _check_pad, "MIRROR_PAD": _check_pad, "CONV_2D": _check_conv,
    "DEPTHWISE_CONV_2D": _check_conv, "TRANSPOSE_CONV": _check_conv, "AVERAGE_POOL_2D": _check_conv,
    "MAX_POOL_2D": _check_conv, "FULLY_CONNECTED": _check_fully_connected, "PRELU": _check_prelu,
    "ONE_HOT": _check_one_hot,
    **{n: _check_misc for n in ("RESHAPE", "TRANSPOSE", "TILE", "SOFTMAX", "RESIZE_BILINEAR",
                                "RESIZE_NEAREST_NEIGHBOR", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "HARD_SWISH",
                                "QUANTIZE", "ADD_N", "BATCH_MATMUL", "CONCATENATION", "DENSIFY")},
}


def _check_op(c: _Ctx, allow_quant_ops: bool) -> None:
    name, op = c.op.kind, c.op
    if name.startswith("CUSTOM:"):
        c.flag("custom-op", "custom ops are not allowed in Meshport artifacts (the GPU delegate would leave "
                            "it on the CPU and split the graph); express it with builtin ops")
        return
    if name not in MAX_VERSIONS or (name in _QUANT_OPS and not allow_quant_ops):
        hint = _HINTS.get(name, "rewrite it with ops from the delegate's list or move it out of the GPU graph")
        c.flag("unsupported-op", f"not supported by the TFLite GPU delegate; {hint}")
        return
    limit = MAX_VERSIONS[name]
    if limit is not None and op.version > limit:
        why = " (batch_dims != 0 or non-float params)" if name == "GATHER" else ""
        c.flag("op-version", f"version {op.version} is above the delegate's maximum {limit}{why}")
    if name == "DEQUANTIZE":
        _check_dequantize(c, allow_quant_ops)
    else:
        check = _OP_CHECKS.get(name)
        if check is not None:
            check(c)
        if name in _LOGICAL:
            _check_logical(c)
    _check_types(c, allow_quant_ops)
