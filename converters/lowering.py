"""ONNX → ONNX: lower `GridSample` (bilinear, zeros padding, align_corners=1, MediaPipe's
whole-sample-outside-is-zero mask folded in by the model as a multiply) into ops TFLite's GPU
delegate accepts: four 1-D GATHERs over the flattened feature map, weights in float.

Index arithmetic: corner coordinates are small integers computed in float (exact in fp16: they
never exceed the map side); each is cast to int32 and combined as y·W + x in int32, so the
flat index stays exact even where it exceeds fp16's exact-integer range (2048 < 48·48).
Indices are clamped into range, so the negative-index guard onnx2tf wraps around GATHER is a
no-op (removed later on the TFLite graph, see tflite_passes)."""
from __future__ import annotations

import numpy as np

from .base import ConversionError

STEP = "onnx-lower-gridsample"


def lower_gridsample(model):
    """Return a new ModelProto with every GridSample node replaced. Raises ConversionError for a
    GridSample the lowering does not cover (mode, padding, align_corners, dynamic shapes, N≠1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    new_nodes, inits = [], []
    counter = [0]

    def const(value, dtype=np.float32) -> str:
        counter[0] += 1
        name = f"gs_lower_c{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], prefix: str, **attrs) -> str:
        counter[0] += 1
        out = f"{prefix}_{op.lower()}{counter[0]}"
        new_nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    count = 0
    for n in model.graph.node:
        if n.op_type != "GridSample":
            new_nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        mode = attrs.get("mode", b"bilinear")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pad = attrs.get("padding_mode", b"zeros")
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if mode not in ("bilinear", "linear") or pad != "zeros" or attrs.get("align_corners", 0) != 1:
            raise ConversionError(STEP, f"unsupported GridSample (mode={mode}, padding={pad}, "
                                        f"align_corners={attrs.get('align_corners', 0)})", node=n.name)
        xs, gs = shapes.get(n.input[0]), shapes.get(n.input[1])
        if not xs or not gs or None in xs or None in gs or xs[0] != 1 or len(xs) != 4:
            raise ConversionError(STEP, f"needs static shapes with batch 1 (features {xs}, grid {gs})", node=n.name)
        _, c, h_in, w_in = xs
        _, h, w, _ = gs
        p = f"{n.name or 'gridsample'}_{count}"
        count += 1
        # Work on 1-D vectors of the h·w samples: rank ≤ 2 tensors keep their layout through
        # onnx2tf's NCHW→NHWC conversion, where 3-D/4-D intermediates would be transposed.
        grid = node("Reshape", [n.input[1], const([h * w, 2], np.int64)], p)
        gx = node("Gather", [grid, const(0, np.int64)], p, axis=1)                 # (h·w,)
        gy = node("Gather", [grid, const(1, np.int64)], p, axis=1)
        # align_corners=1: normalised −1..1 ↔ pixel 0..W−1
        x = node("Mul", [node("Add", [gx, const(1.0)], p), const((w_in - 1) / 2.0)], p)
        y = node("Mul", [node("Add", [gy, const(1.0)], p), const((h_in - 1) / 2.0)], p)
        x0, y0 = node("Floor", [x], p), node("Floor", [y], p)
        fx, fy = node("Sub", [x, x0], p), node("Sub", [y, y0], p)
        gx1, gy1 = node("Sub", [const(1.0), fx], p), node("Sub", [const(1.0), fy], p)
        flat = node("Reshape", [node("Transpose", [n.input[0]], p, perm=[0, 2, 3, 1]),
                                const([h_in * w_in, c], np.int64)], p)           # (H·W, C)
        acc = None
        for dy, wy in ((0, gy1), (1, fy)):
            yc = node("Clip", [node("Add", [y0, const(float(dy))], p), const(0.0), const(float(h_in - 1))], p)
            yi = node("Mul", [node("Cast", [yc], p, to=TensorProto.INT32), const(w_in, np.int32)], p)
            for dx, wx in ((0, gx1), (1, fx)):
                xc = node("Clip", [node("Add", [x0, const(float(dx))], p), const(0.0), const(float(w_in - 1))], p)
                idx = node("Add", [yi, node("Cast", [xc], p, to=TensorProto.INT32)], p)
                vals = node("Gather", [flat, idx], p, axis=0)                      # (h·w, C)
                wgt = node("Unsqueeze", [node("Mul", [wx, wy], p), const([1], np.int64)], p)
                term = node("Mul", [vals, wgt], p)
                acc = term if acc is None else node("Add", [acc, term], p)
        out = node("Reshape", [acc, const([1, h, w, c], np.int64)], p)
        new_nodes.append(helper.make_node("Transpose", [out], [n.output[0]], name=f"{p}_out", perm=[0, 3, 1, 2]))
    graph = helper.make_graph(new_nodes, model.graph.name, list(model.graph.input), list(model.graph.output),
                              list(model.graph.initializer) + inits)
    lowered = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="meshport")
    lowered.ir_version = model.ir_version
    onnx.checker.check_model(lowered, full_check=True)
    return lowered
