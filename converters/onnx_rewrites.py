"""ONNX → ONNX rewrites into ops TFLite's GPU delegate accepts, applied before onnx2tf:

- `AffineGrid` (opset 20, what torch exports for `F.affine_grid`) as one MatMul of the affine
  matrices with a constant base grid. For θ (N, 2, 3) and size (N, C, H, W): baseᵀ (3, H·W) holds
  [x_j, y_i, 1] per pixel, x_j the normalised pixel centre of column j (align_corners=1:
  −1 + 2j/(W−1); 0: (2j+1)/W − 1), y_i likewise; grid = Reshape(Transpose(MatMul(θ, baseᵀ)),
  (N, H, W, 2)) — the run-time operand first and a constant 2-D matrix second, the only MatMul
  form with one run-time input the delegate takes.
- `LogSoftmax` (the delegate has none) as x − m − log Σ exp(x − m), m = max x along the axis."""
from __future__ import annotations

import numpy as np

from .base import ConversionError

STEP = "onnx-lower-affinegrid"


def _axis(size: int, align: int) -> np.ndarray:
    j = np.arange(size, dtype=np.float64)
    if align:
        return -1.0 + 2.0 * j / (size - 1) if size > 1 else np.zeros(1)
    return (2.0 * j + 1.0) / size - 1.0


def lower_affine_grid(model):
    """`model` with every AffineGrid node replaced (a new ModelProto; others are left as they are).
    The size input must be a constant of four values (2-D grids): otherwise a ConversionError."""
    import onnx
    from onnx import helper, numpy_helper

    if not any(n.op_type == "AffineGrid" for n in model.graph.node):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    nodes, inits = [], []
    for k, n in enumerate(model.graph.node):
        if n.op_type != "AffineGrid":
            nodes.append(n)
            continue
        size = consts.get(n.input[1])
        if size is None or size.shape != (4,):
            raise ConversionError(STEP, "AffineGrid needs a constant 4-value size (N, C, H, W); "
                                        f"{n.input[1]!r} is {'computed at run time' if size is None else size.shape}",
                                  node=n.name)
        align = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "align_corners"), 0)
        nb, _, h, w = (int(v) for v in size)
        ys, xs = np.meshgrid(_axis(h, align), _axis(w, align), indexing="ij")
        base_t = np.stack([xs.reshape(-1), ys.reshape(-1), np.ones(h * w)]).astype(np.float32)   # (3, H·W)
        p = f"_affinegrid{k}"
        inits += [numpy_helper.from_array(base_t, p + "_base"),
                  numpy_helper.from_array(np.array([nb, h, w, 2], np.int64), p + "_shape")]
        nodes += [helper.make_node("MatMul", [n.input[0], p + "_base"], [p + "_xy"], name=p + "_mm"),
                  helper.make_node("Transpose", [p + "_xy"], [p + "_flat"], perm=[0, 2, 1], name=p + "_t"),
                  helper.make_node("Reshape", [p + "_flat", p + "_shape"], [n.output[0]], name=p + "_r")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    return model


def lower_log_softmax(model):
    """`model` with every LogSoftmax as ReduceMax, Sub, Exp, ReduceSum, Log, Sub (the stable form)."""
    import onnx
    from onnx import helper, numpy_helper

    if not any(n.op_type == "LogSoftmax" for n in model.graph.node):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes, inits = [], []
    for k, n in enumerate(model.graph.node):
        if n.op_type != "LogSoftmax":
            nodes.append(n)
            continue
        axis = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), -1)
        p = f"_logsoftmax{k}"
        inits.append(numpy_helper.from_array(np.array([axis], np.int64), p + "_axes"))
        if opset >= 18:     # ReduceMax takes its axes as an input from opset 18 (ReduceSum from 13)
            rmax = helper.make_node("ReduceMax", [n.input[0], p + "_axes"], [p + "_m"], keepdims=1, name=p + "_max")
        else:
            rmax = helper.make_node("ReduceMax", [n.input[0]], [p + "_m"], axes=[axis], keepdims=1, name=p + "_max")
        nodes += [rmax,
                  helper.make_node("Sub", [n.input[0], p + "_m"], [p + "_y"], name=p + "_sub"),
                  helper.make_node("Exp", [p + "_y"], [p + "_e"], name=p + "_exp"),
                  helper.make_node("ReduceSum", [p + "_e", p + "_axes"], [p + "_s"], keepdims=1, name=p + "_sum"),
                  helper.make_node("Log", [p + "_s"], [p + "_l"], name=p + "_log"),
                  helper.make_node("Sub", [p + "_y", p + "_l"], [n.output[0]], name=p + "_out")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    return model


def gpu_rewrites(model):
    """Every rewrite of this module, in order."""
    return lower_log_softmax(lower_affine_grid(model))
