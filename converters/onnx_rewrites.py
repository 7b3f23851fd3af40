"""ONNX → ONNX rewrites into ops TFLite's GPU delegate accepts, applied before onnx2tf:

- `AffineGrid` (opset 20, what torch exports for `F.affine_grid`) as one MatMul of the affine
  matrices with a constant base grid. For θ (N, 2, 3) and size (N, C, H, W): baseᵀ (3, H·W) holds
  [x_j, y_i, 1] per pixel, x_j the normalised pixel centre of column j (align_corners=1:
  −1 + 2j/(W−1); 0: (2j+1)/W − 1), y_i likewise; grid = Reshape(Transpose(MatMul(θ, baseᵀ)),
  (N, H, W, 2)) — the run-time operand first and a constant 2-D matrix second, the only MatMul
  form with one run-time input the delegate takes.
- `LogSoftmax` (the delegate has none) as x − (m + log Σ exp(x − m)), m = max x along the axis:
  the TFLite converter fuses the form (x − m) − log Σ exp(x − m) back into LOG_SOFTMAX.
- a `Gather` of one constant index from a 4-D float tensor (what `x[:, j]` of a feature map
  exports; onnx2tf keeps it as a GATHER with a 0-D or int64 index, which the delegate refuses) as
  a Slice (and a Reshape that drops the axis for a scalar index)."""
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
    """`model` with every LogSoftmax as ReduceMax, Sub, Exp, ReduceSum, Log, Add, Sub (the stable
    form, written so that the TFLite converter does not fuse it back into LOG_SOFTMAX)."""
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
                  helper.make_node("Add", [p + "_m", p + "_l"], [p + "_lse"], name=p + "_lse"),
                  helper.make_node("Sub", [n.input[0], p + "_lse"], [n.output[0]], name=p + "_out")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    return model


def constant_gathers_as_slices(model):
    """`model` with every Gather of one constant index from a static 4-D float tensor as a Slice
    (+ Reshape for a scalar index); other Gathers are left as they are."""
    import onnx
    from onnx import helper, numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    if not any(n.op_type == "Gather" and n.input[1] in consts and consts[n.input[1]].size == 1
               and n.input[0] not in consts for n in model.graph.node):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and vi.type.tensor_type.HasField("shape") \
                and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]     # float tensors of static shape only
    nodes, inits = [], []
    for k, n in enumerate(model.graph.node):
        idx = consts.get(n.input[1]) if n.op_type == "Gather" else None
        shape = shapes.get(n.input[0])
        if idx is None or idx.size != 1 or shape is None or n.input[0] in consts:
            nodes.append(n)
            continue
        rank = len(shape)
        axis = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), 0) % rank
        j = int(idx.reshape(-1)[0]) % shape[axis]
        out_shape = shape[:axis] + ([1] if idx.ndim else []) + shape[axis + 1:]
        p = f"_gather_slice{k}"
        if rank != 4:
            nodes.append(n)
            continue
        inits += [numpy_helper.from_array(np.array([v], np.int64), p + s) for v, s in
                  ((j, "_start"), (j + 1, "_end"), (axis, "_axis"))]
        picked = [helper.make_node("Slice", [n.input[0], p + "_start", p + "_end", p + "_axis"],
                                   [p + "_y" if idx.ndim == 0 else n.output[0]], name=p)]
        if idx.ndim == 0:
            inits.append(numpy_helper.from_array(np.array(out_shape, np.int64), p + "_shape"))
            picked.append(helper.make_node("Reshape", [p + "_y", p + "_shape"], [n.output[0]], name=p + "_r"))
        nodes += picked
    used = {i for n in nodes for i in n.input}
    kept = [i for i in model.graph.initializer if i.name in used]    # the replaced indices go
    del model.graph.node[:], model.graph.initializer[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(kept + inits)
    return model


def gpu_rewrites(model):
    """Every rewrite of this module, in order."""
    return constant_gathers_as_slices(lower_log_softmax(lower_affine_grid(model)))
