"""ONNX → ONNX: lower `GridSample` (bilinear, zeros padding, align_corners=1; MediaPipe's
whole-sample-outside-is-zero mask is a separate multiply in the model) into ops TFLite's GPU
delegate accepts: 1-D int32 GATHERs over the flattened feature map, weights in float.

The delegate has no int32 arithmetic and computes floats in fp16, whose integers are exact only
up to 2048 — less than 48·48. So the flat index is computed in float but kept below 2048: when
the map has more pixels, it is split into its even and odd columns (each H·W/2 pixels), both
gathered at pair index y·W/2 + ⌊x/2⌋, and the column parity picks one of them by weight.
Corners outside the map get weight 0 (zeros padding) and read a clamped, in-range pixel.
Every intermediate has rank ≤ 2 (onnx2tf's NCHW→NHWC conversion leaves those alone), and
indices are clamped into range, so onnx2tf's negative-index guard is a no-op (tflite_passes)."""
from __future__ import annotations

import numpy as np

from .base import ConversionError

STEP = "onnx-lower-gridsample"
FP16_EXACT = 2048  # fp16 represents every integer up to 2048 exactly
LOWERED_OUT = "/lowered_gridsample_out"  # name suffix of each lowered sampler's output node


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

    producer = {o: n for n in model.graph.node for o in n.output}
    inits_by_name = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    inits_by_name[n.output[0]] = numpy_helper.to_array(a.t)
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
        split = 1 if h_in * w_in <= FP16_EXACT else 2
        if h_in * w_in > split * FP16_EXACT or w_in % split:
            raise ConversionError(STEP, f"feature map {h_in}×{w_in} too large for fp16-exact indices", node=n.name)
        k = [h * w]
        planes = _grid_planes(n.input[1], producer, shapes, h * w)
        if planes is not None:  # the grid was stacked from two rank-2 planes: use them directly
            gx, gy = (node("Reshape", [t, const(k, np.int64)], p) for t in planes)
        else:
            grid = node("Reshape", [n.input[1], const([h * w, 2], np.int64)], p)
            gx = node("Reshape", [node("Gather", [grid, const([0], np.int64)], p, axis=1), const(k, np.int64)], p)
            gy = node("Reshape", [node("Gather", [grid, const([1], np.int64)], p, axis=1), const(k, np.int64)], p)
        # align_corners=1: normalised −1..1 ↔ pixel 0..W−1. Where the grid was normalised from
        # pixel coordinates as c·2/(W−1) − 1, take those coordinates instead: 2/(W−1) is not
        # exact in fp16 and the round trip would cost ~1e-3 of a coordinate.
        pix = [_unnormalised(t, producer, inits_by_name, size) if planes is not None else None
               for t, size in zip(planes or (None, None), (w_in, h_in))]
        x = node("Reshape", [pix[0], const(k, np.int64)], p) if pix[0] else \
            node("Mul", [node("Add", [gx, const(1.0)], p), const((w_in - 1) / 2.0)], p)
        y = node("Reshape", [pix[1], const(k, np.int64)], p) if pix[1] else \
            node("Mul", [node("Add", [gy, const(1.0)], p), const((h_in - 1) / 2.0)], p)
        x0, y0 = node("Floor", [x], p), node("Floor", [y], p)
        fx, fy = node("Sub", [x, x0], p), node("Sub", [y, y0], p)
        gx1, gy1 = node("Sub", [const(1.0), fx], p), node("Sub", [const(1.0), fy], p)
        # (H·W/split, C) tables: all pixels, or the even and the odd columns.
        tables = []
        for start in range(split):
            cols = n.input[0] if split == 1 else node(
                "Slice", [n.input[0], const([start], np.int64), const([w_in], np.int64),
                          const([3], np.int64), const([split], np.int64)], p)
            tables.append(node("Reshape", [node("Transpose", [cols], p, perm=[0, 2, 3, 1]),
                                           const([h_in * w_in // split, c], np.int64)], p))
        def valid(ci: str, size: int) -> str:
            """1.0 where integer coordinate ci lies in [0, size−1], else 0.0 (zeros padding)."""
            low = node("Clip", [node("Add", [ci, const(1.0)], p), const(0.0), const(1.0)], p)
            high = node("Clip", [node("Sub", [const(float(size)), ci], p), const(0.0), const(1.0)], p)
            return node("Mul", [low, high], p)

        # Per axis, once: the two neighbours' clamped coordinate and their weight (bilinear ×
        # in-range); per column neighbour also its pair index and the weights of the even/odd
        # tables. Per corner only the flat index, one product and the gathers remain.
        cols = []
        for dx, wx in ((0, gx1), (1, fx)):
            xi = node("Add", [x0, const(float(dx))], p)
            xc = node("Clip", [xi, const(0.0), const(float(w_in - 1))], p)
            wxv = node("Mul", [wx, valid(xi, w_in)], p)
            if split == 1:
                cols.append((xc, [wxv]))
            else:
                pair = node("Floor", [node("Mul", [xc, const(0.5)], p)], p)
                odd = node("Sub", [xc, node("Mul", [pair, const(2.0)], p)], p)   # 0 or 1
                cols.append((pair, [node("Mul", [wxv, node("Sub", [const(1.0), odd], p)], p),
                                    node("Mul", [wxv, odd], p)]))
        acc = None
        for dy, wy in ((0, gy1), (1, fy)):
            yi = node("Add", [y0, const(float(dy))], p)
            yc = node("Clip", [yi, const(0.0), const(float(h_in - 1))], p)
            row = node("Mul", [yc, const(float(w_in // split))], p)
            wyv = node("Mul", [wy, valid(yi, h_in)], p)
            for pair, col_weights in cols:
                idx = node("Cast", [node("Add", [row, pair], p)], p, to=TensorProto.INT32)
                for table, wx_pick in zip(tables, col_weights):
                    vals = node("Gather", [table, idx], p, axis=0)                  # (h·w, C)
                    w_pick = node("Unsqueeze", [node("Mul", [wx_pick, wyv], p), const([1], np.int64)], p)
                    term = node("Mul", [vals, w_pick], p)
                    acc = term if acc is None else node("Add", [acc, term], p)
        out = node("Reshape", [acc, const([1, h, w, c], np.int64)], p)
        new_nodes.append(helper.make_node("Transpose", [out], [n.output[0]], name=f"{p}{LOWERED_OUT}", perm=[0, 3, 1, 2]))
    new_nodes = _drop_dead(new_nodes, {o.name for o in model.graph.output})
    graph = helper.make_graph(new_nodes, model.graph.name, list(model.graph.input), list(model.graph.output),
                              list(model.graph.initializer) + inits)
    lowered = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="meshport")
    lowered.ir_version = model.ir_version
    onnx.checker.check_model(lowered, full_check=True)
    return lowered


def _grid_planes(grid: str, producer: dict, shapes: dict, k: int) -> tuple[str, str] | None:
    """If grid = Reshape(Concat(Unsqueeze(gx, -1), Unsqueeze(gy, -1), axis=-1)) with gx, gy of
    k elements (how a stacked x/y grid exports), return (gx, gy)."""
    from onnx import helper, numpy_helper  # noqa: F401

    reshape = producer.get(grid)
    if reshape is None or reshape.op_type != "Reshape":
        return None
    concat = producer.get(reshape.input[0])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return None
    rank = len(shapes.get(concat.output[0]) or [])
    axis = next((helper.get_attribute_value(a) for a in concat.attribute if a.name == "axis"), None)
    if rank == 0 or axis not in (-1, rank - 1):
        return None
    planes = []
    for t in concat.input:
        u = producer.get(t)
        if u is None or u.op_type != "Unsqueeze" or len(u.input) < 2:
            return None
        src = shapes.get(u.input[0])
        if not src or None in src or int(np.prod(src)) != k:
            return None
        planes.append(u.input[0])
    return planes[0], planes[1]


def _drop_dead(nodes: list, keep: set[str]) -> list:
    while True:
        used = {i for n in nodes for i in n.input} | keep
        alive = [n for n in nodes if any(o in used for o in n.output)]
        if len(alive) == len(nodes):
            return alive
        nodes = alive


def _unnormalised(plane: str, producer: dict, consts: dict, size: int) -> str | None:
    """If plane = c·(2/(size−1)) − 1 (Sub(Mul(c, k), 1) or Add(Mul(c, k), −1)), return c."""
    outer = producer.get(plane)
    if outer is None or outer.op_type not in ("Sub", "Add") or len(outer.input) != 2:
        return None
    one = consts.get(outer.input[1])
    want = 1.0 if outer.op_type == "Sub" else -1.0
    if one is None or one.size != 1 or float(one.reshape(())) != want:
        return None
    mul = producer.get(outer.input[0])
    if mul is None or mul.op_type != "Mul":
        return None
    for c, kk in ((0, 1), (1, 0)):
        factor = consts.get(mul.input[kk])
        if factor is not None and factor.size == 1 and np.isclose(float(factor.reshape(())), 2.0 / (size - 1),
                                                                  rtol=1e-6, atol=0):
            return mul.input[c]
    return None


def sum_residual_adds(model):
    """Turn 4-D Adds of two runtime tensors that precede the lowered samplers into `Sum`.

    onnx2tf 1.29's Add has a "rescue guard" that compares its NHWC result with the ONNX (NCHW)
    output shape, finds them different and transposes both inputs to NCHW; the following
    PReLUs and depthwise convolutions then fall back to slow forms wrapped in TRANSPOSEs. Its
    Sum has no such guard and lowers to ADD_N. Adds downstream of the lowered samplers are left
    alone: there the guard is what reconciles the crop's layout. Returns (model, count)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    rank = {vi.name: len(vi.type.tensor_type.shape.dim)
            for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    static = {i.name for i in model.graph.initializer} | \
        {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    downstream: set[str] = set()
    count = 0
    for n in model.graph.node:  # topological order
        if n.name.endswith(LOWERED_OUT) or any(i in downstream for i in n.input):
            downstream.update(n.output)
            continue
        if n.op_type == "Add" and len(n.input) == 2 and all(rank.get(i) == 4 and i not in static for i in n.input):
            n.op_type = "Sum"
            count += 1
    return model, count
