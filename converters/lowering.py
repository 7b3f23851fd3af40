"""ONNX → ONNX: lower `GridSample` (bilinear, zeros padding, align_corners=1) into ops TFLite's
GPU delegate accepts: 1-D int32 GATHERs over the feature map, weights and index math in float.

The delegate has no int32 arithmetic and computes floats in fp16, whose integers are exact only
up to 2048 — less than 48·48. The map is therefore gathered from two tables, its even and its odd
rows (each ⌈H/2⌉·W pixels): of the two rows around a sample one is even and one odd, so each
table is read at (row pair index)·W + column for the sample's two columns — four corners, two
GATHERs. Every corner weight is a hat function 1 − |p − corner| of the sample coordinate p, so a
corner clamped into the map (zeros padding) gets weight ≤ 0, clipped to 0.

Samplers that read the same map with the same crop size are lowered together: their x and y
coordinates are laid side by side in one (1, 2K) row and every elementwise step runs once for
all of them (the TFLite cost of this part is per op, not per element). Two model idioms are
folded in when recognised exactly: coordinates that are affine in one matrix tensor
(x = Σ mᵢ·aᵢ + b, the crop matrix through a constant pixel grid) become one MatMul, and
MediaPipe's rule "a sample outside [0,W−1]×[0,H−1] is 0", written after the sampler as a Mul by
floor/clip in-bounds masks of the same coordinates, becomes part of the weights.

Layout: each crop leaves as (1,h,w,C) → Transpose to NCHW → a 1×1 depthwise Conv with unit
weights. onnx2tf treats a Conv's output as channels-last, so the heads after it convert to native
NHWC ops without transposes; the identity Conv is removed again on the TFLite side
(tflite_passes.drop_identity_convs). Everything else has rank ≤ 2 (onnx2tf's NCHW→NHWC
conversion leaves those alone), and indices are clamped into range, so onnx2tf's
negative-index guard is a no-op (tflite_passes.strip_gather_guards)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ConversionError

STEP = "onnx-lower-gridsample"
FP16_EXACT = 2048  # fp16 represents every integer up to 2048 exactly
LOWERED_OUT = "/lowered_gridsample_out"  # name suffix of each lowered sampler's output node


@dataclass
class _Sampler:
    node: object               # the GridSample
    out: str                   # the tensor the lowering produces (the GridSample's, or the mask Mul's)
    c: int
    size: tuple[int, int]      # feature map H, W
    crop: tuple[int, int]      # h, w
    x: str | None = None       # pixel-coordinate planes (h·w elements), when the grid was built from them
    y: str | None = None
    masked: bool = False       # the in-bounds mask Mul after it is folded in
    affine: tuple | None = None  # (matrix tensor, A (k, 2·h·w), b (2·h·w,)): [x|y] = m·A + b


def lower_gridsample(model):
    """Return a new ModelProto with every GridSample node replaced. Raises ConversionError for a
    GridSample the lowering does not cover (mode, padding, align_corners, dynamic shapes, N≠1)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits, counter = [], [0]

    def const(value, dtype=np.float32) -> str:
        counter[0] += 1
        name = f"gs_lower_c{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(out_nodes: list, op: str, inputs: list[str], prefix: str, outputs: int = 1, **attrs):
        counter[0] += 1
        outs = [f"{prefix}_{op.lower()}{counter[0]}" + (f"_{i}" if outputs > 1 else "") for i in range(outputs)]
        out_nodes.append(helper.make_node(op, inputs, outs, name=f"{prefix}_{op.lower()}{counter[0]}", **attrs))
        return outs[0] if outputs == 1 else outs

    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    graph_outputs = {o.name for o in model.graph.output}

    samplers: list[_Sampler] = []
    for n in model.graph.node:
        if n.op_type != "GridSample":
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
        if h_in < 2 or w_in < 2 or (h_in + 1) // 2 * w_in > FP16_EXACT:
            raise ConversionError(STEP, f"feature map {h_in}×{w_in} unsupported: needs 2 ≤ H, W and "
                                        f"⌈H/2⌉·W ≤ {FP16_EXACT} for fp16-exact indices", node=n.name)
        s = _Sampler(n, n.output[0], c, (h_in, w_in), (h, w))
        planes = _grid_planes(n.input[1], producer, shapes, h * w)
        if planes is not None:  # the grid was stacked from two planes; take their pixel coordinates
            s.x = _unnormalised(planes[0], producer, consts, w_in)
            s.y = _unnormalised(planes[1], producer, consts, h_in)
        if s.x is not None and s.y is not None:
            mul = consumers.get(n.output[0], [])
            if len(mul) == 1 and mul[0].op_type == "Mul" and n.output[0] not in graph_outputs \
                    and shapes.get(mul[0].output[0]) == shapes.get(n.output[0]):
                other = [i for i in mul[0].input if i != n.output[0]]
                if len(other) == 1 and shapes.get(other[0]) == [1, 1, h, w] \
                        and _inside_planes(other[0], producer, consts) == {(s.x, w_in), (s.y, h_in)}:
                    s.masked, s.out = True, mul[0].output[0]
            fx, fy = _affine(s.x, producer, consts, shapes), _affine(s.y, producer, consts, shapes)
            if fx is not None and fy is not None and fx[0] == fy[0] and fx[1].shape == fy[1].shape \
                    and fx[1].shape[1] == h * w:
                s.affine = (fx[0], np.concatenate([fx[1], fy[1]], axis=1).astype(np.float32),
                            np.concatenate([fx[2], fy[2]]).astype(np.float32))
        samplers.append(s)

    # Samplers reading the same map at the same crop size, with the same mask rule, go together.
    groups: dict[tuple, list[_Sampler]] = {}
    for s in samplers:
        groups.setdefault((s.node.input[0], s.crop, s.masked), []).append(s)
    replaced = {id(s.node) for s in samplers} | {id(consumers[s.node.output[0]][0]) for s in samplers if s.masked}
    emitted: dict[int, list] = {}   # position (index of the group's last GridSample) → its nodes
    position = {id(n): i for i, n in enumerate(model.graph.node)}
    for gi, members in enumerate(groups.values()):
        out_nodes: list = []
        _emit_group(members, f"/gs_lowered_{gi}", out_nodes, node, const)
        emitted[max(position[id(s.node)] for s in members)] = out_nodes

    new_nodes = []
    for i, n in enumerate(model.graph.node):
        if id(n) not in replaced:
            new_nodes.append(n)
        new_nodes += emitted.get(i, [])
    new_nodes = _topological(new_nodes, {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
                             | {i.name for i in inits})
    new_nodes = _drop_dead(new_nodes, graph_outputs)
    graph = helper.make_graph(new_nodes, model.graph.name, list(model.graph.input), list(model.graph.output),
                              list(model.graph.initializer) + inits)
    lowered = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="meshport")
    lowered.ir_version = model.ir_version
    onnx.checker.check_model(lowered, full_check=True)
    return lowered


def _emit_group(members: list[_Sampler], p: str, out: list, node, const) -> None:
    """The nodes lowering `members` (same map, crop size and mask rule) together."""
    from onnx import TensorProto, helper

    first = members[0]
    c, (h_in, w_in), (h, w) = first.c, first.size, first.crop
    hw, r = h * w, len(members)
    k = r * hw
    n = lambda op, inputs, **attrs: node(out, op, inputs, p, **attrs)  # noqa: E731

    # S (1, 2K): per sampler its x then its y pixel coordinates (blocks 2i, 2i+1).
    affine = [s.affine for s in members]
    if all(a is not None for a in affine) and len({a[0] for a in affine}) == len(affine) \
            and all(np.array_equal(a[1], affine[0][1]) and np.array_equal(a[2], affine[0][2]) for a in affine):
        mats = affine[0][0] if r == 1 else n("Concat", [a[0] for a in affine], axis=0)          # (R, k)
        coef, bias = affine[0][1], affine[0][2]
        q = coef.shape[0] // 2
        if coef.shape[0] % 2 == 0 and not coef[:q, hw:].any() and not coef[q:, :hw].any() \
                and np.array_equal(coef[:q, :hw], coef[q:, hw:]) and np.array_equal(bias[:hw], bias[hw:]):
            # x from the first half of the entries and y from the second, through the same grid
            # (the crop matrix's two rows): (2R, k/2) @ (k/2, hw), rows already x₁ y₁ x₂ y₂ …
            mats = n("Reshape", [mats, const([2 * r, q], np.int64)])
            coef, bias = coef[:q, :hw], bias[:hw]
        xy = n("Add", [_matmul(mats, coef, n, const), const(bias[None])])
        s = n("Reshape", [xy, const([1, 2 * k], np.int64)])
    else:
        planes = []
        for m in members:
            if m.x is not None and m.y is not None:
                xy = [m.x, m.y]
            else:
                xy = _pixel_planes(m, n, const)
            planes += [n("Reshape", [t, const([1, hw], np.int64)]) for t in xy]
        s = n("Concat", planes, axis=1)
    axis = np.tile(np.repeat([0, 1], hw), r)[None]              # 0: an x element, 1: a y element
    size = np.tile(np.where(axis == 0, w_in, h_in).astype(np.float32), 2)    # (1, 4K)
    parity = np.repeat(np.array([[0.0, 1.0]], np.float32), 2 * k, axis=1)    # (1, 4K)

    # The GPU delegate reads a 2-D tensor [a, b] as a batch of a, and neither broadcasts across
    # that batch nor reads constants with a batch over 1 correctly. Every elementwise op below
    # therefore has operands of one shape (1, 4K) or a scalar: the coordinates twice, once per
    # row parity, side by side (in memory the (2, 2K) view: row a = parity a).
    s = n("Concat", [s, s], axis=1)                                            # (1, 4K)
    # Neighbours per axis: p0 = clip(⌊p⌋, 0, size−2) and p0+1. Row a of (2, 2K) is the one with
    # parity a: pair index n = ⌊(p0 + 1 − a)/2⌋, coordinate 2n + a.
    p0 = n("Relu", [n("Min", [n("Floor", [s]), const(size - 2)])])
    pair = n("Floor", [n("Mul", [n("Add", [p0, const(1.0 - parity)]), const(0.5)])])
    pos = n("Add", [n("Mul", [pair, const(2.0)]), const(parity)])
    weight = n("Sub", [const(1.0), n("Abs", [n("Sub", [s, pos])])])          # hat function
    if first.masked:
        # MediaPipe's rule per axis, exactly as the model's floor/clip mask: 1 iff 0 ≤ p ≤ size−1,
        # i.e. p·(size−1−p) ≥ 0. Inside, both hat weights are ≥ 0 already.
        inside = n("Mul", [s, n("Sub", [const(size - 1), s])])
        inside = n("Clip", [n("Add", [n("Floor", [inside]), const(1.0)]), const(0.0), const(1.0)])
        weight = n("Mul", [weight, inside])
    else:
        weight = n("Relu", [weight])
    # Corner (a, b, sampler i) = row of parity a × column of parity b: rows of the (2·2R, hw) views.
    rows_y = [a * 2 * r + 2 * i + 1 for a in (0, 1) for b in (0, 1) for i in range(r)]
    rows_x = [b * 2 * r + 2 * i for a in (0, 1) for b in (0, 1) for i in range(r)]
    view = const([4 * r, hw], np.int64)
    wt = n("Reshape", [weight, view])
    rows_y, rows_x = const(rows_y, np.int32), const(rows_x, np.int32)
    w4 = n("Mul", [n("Gather", [wt, rows_y], axis=0), n("Gather", [wt, rows_x], axis=0)])
    pair4, pos4 = n("Reshape", [pair, view]), n("Reshape", [pos, view])
    index = n("Add", [n("Mul", [n("Gather", [pair4, rows_y], axis=0), const(float(w_in))]),
                      n("Gather", [pos4, rows_x], axis=0)])                      # < ⌈H/2⌉·W ≤ 2048
    # Per corner (a, b) its K indices and weights: one row of the (4, K) views, selected by a
    # constant GATHER (the delegate slices 3-D/4-D tensors only; TFLite's GATHER copies whole
    # rows fast but single elements slowly).
    index = n("Reshape", [index, const([4, k], np.int64)])
    w4 = n("Reshape", [w4, const([4, k], np.int64)])
    feat = n("Transpose", [first.node.input[0]], perm=[0, 2, 3, 1])                           # (1,H,W,C)
    tables = []
    for a in (0, 1):                                                       # even rows, odd rows
        rows = n("Slice", [feat, const([a], np.int64), const([h_in], np.int64), const([1], np.int64),
                           const([2], np.int64)])
        tables.append(n("Reshape", [rows, const([(h_in - a + 1) // 2 * w_in, c], np.int64)]))
    crops = None
    for j in range(4):                                                     # corner j = (a, b)
        row = const([j], np.int32)
        idx = n("Cast", [n("Reshape", [n("Gather", [index, row], axis=0), const([k], np.int64)])],
                to=TensorProto.INT32)
        weight_j = n("Reshape", [n("Gather", [w4, row], axis=0), const([k, 1], np.int64)])
        term = n("Mul", [n("Gather", [tables[j // 2], idx], axis=0), weight_j])                  # (K, C)
        crops = term if crops is None else n("Add", [crops, term])
    crops = n("Reshape", [crops, const([r, h, w, c], np.int64)])
    parts = [crops] if r == 1 else node(out, "Split", [crops, const([1] * r, np.int64)], p, outputs=r, axis=0)
    for i, (m, part) in enumerate(zip(members, parts)):
        nchw = n("Transpose", [part], perm=[0, 3, 1, 2])
        out.append(helper.make_node("Conv", [nchw, const(np.ones((c, 1, 1, 1)))], [m.out],
                                    name=f"{p}_{i}{LOWERED_OUT}", group=c, kernel_shape=[1, 1]))


def _matmul(x: str, w: np.ndarray, n, const) -> str:
    """x @ w for a constant w, in column chunks of under 1024 weights: TFLite's dynamic-range
    int8 quantisation leaves smaller constants in float, and the GPU delegate has no hybrid
    (int8-weight) FULLY_CONNECTED."""
    cols = max(1, 1023 // max(w.shape[0], 1))
    parts = [n("MatMul", [x, const(w[:, i:i + cols])]) for i in range(0, w.shape[1], cols)]
    return parts[0] if len(parts) == 1 else n("Concat", parts, axis=1)


def _pixel_planes(m: _Sampler, n, const) -> list[str]:
    """x, y pixel coordinates (align_corners=1: −1..1 ↔ 0..size−1) of a grid given as a tensor."""
    h_in, w_in = m.size
    hw = m.crop[0] * m.crop[1]
    grid = n("Reshape", [m.node.input[1], const([hw, 2], np.int64)])
    out = []
    for j, size in ((0, w_in), (1, h_in)):
        g = n("Reshape", [n("Gather", [grid, const([j], np.int64)], axis=1), const([1, hw], np.int64)])
        out.append(n("Mul", [n("Add", [g, const(1.0)]), const((size - 1) / 2.0)]))
    return out


def _topological(nodes: list, available: set[str]) -> list:
    """Nodes in an order where every input is produced first, as close to the given order as
    possible (lowered groups are emitted after their last sampler; earlier heads may need them)."""
    import heapq

    made = {o: i for i, n in enumerate(nodes) for o in n.output}
    waiting = [{t for t in n.input if t and t in made and t not in available} for n in nodes]
    users: dict[str, list[int]] = {}
    for i, deps in enumerate(waiting):
        for t in deps:
            users.setdefault(t, []).append(i)
    ready = [i for i, deps in enumerate(waiting) if not deps]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for t in nodes[i].output:
            for j in users.get(t, []):
                waiting[j].discard(t)
                if not waiting[j]:
                    heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise ConversionError(STEP, "the lowered graph has a cycle")
    return order


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


def _scalar(consts: dict, t: str) -> float | None:
    v = consts.get(t)
    return float(v.reshape(())) if v is not None and v.size == 1 else None


def _operands(node, consts: dict) -> tuple[str, float] | None:
    """(runtime input, scalar constant) of a two-input node with one scalar-constant input."""
    if node is None or len(node.input) != 2:
        return None
    for a, b in ((0, 1), (1, 0)):
        v = _scalar(consts, node.input[b])
        if v is not None and node.input[a] not in consts:
            return node.input[a], v
    return None


def _inside_planes(mask: str, producer: dict, consts: dict) -> set | None:
    """If `mask` = [Reshape](inside(p, P)·inside(q, Q)) with inside(p, n) = clip(⌊p⌋+1, 0, 1)·
    clip(⌊−p⌋+n, 0, 1) — 1 iff 0 ≤ p ≤ n−1, the model's MediaPipe mask — return {(p, P), (q, Q)}."""
    def made(t, op):
        nd = producer.get(t)
        return nd if nd is not None and nd.op_type == op else None

    def clip01(t):
        nd = made(t, "Clip")
        if nd is None or len(nd.input) != 3 or (_scalar(consts, nd.input[1]), _scalar(consts, nd.input[2])) != (0.0, 1.0):
            return None
        return _operands(made(nd.input[0], "Add"), consts)      # (⌊…⌋, constant)

    def inside(t):
        mul = made(t, "Mul")
        if mul is None or len(mul.input) != 2:
            return None
        for a, b in ((0, 1), (1, 0)):
            lo, hi = clip01(mul.input[a]), clip01(mul.input[b])
            if lo is None or hi is None or lo[1] != 1.0:
                continue
            f_lo, f_hi = made(lo[0], "Floor"), made(hi[0], "Floor")
            neg = made(f_hi.input[0], "Neg") if f_hi is not None else None
            if f_lo is not None and neg is not None and neg.input[0] == f_lo.input[0] and hi[1] == int(hi[1]) >= 1:
                return f_lo.input[0], int(hi[1])
        return None

    reshape = made(mask, "Reshape")
    mul = made(reshape.input[0] if reshape is not None else mask, "Mul")
    if mul is None or len(mul.input) != 2:
        return None
    parts = [inside(t) for t in mul.input]
    return None if None in parts else set(parts)


def _affine(t: str, producer: dict, consts: dict, shapes: dict):
    """If t is affine in the entries of one (1, k) tensor M — built from Gathers of single
    columns of M, constants, Add, Sub, Neg and Mul by constants — return (M, A, b) with
    t = Σⱼ M[0, j]·A[j] + b (A: (k, n), b: (n,), over t's n elements in order); else None."""
    form = _linear(t, producer, consts)
    shape, m = shapes.get(t), form[0] if form else None
    if form is None or m is None or not form[1] or not shape or None in shape \
            or len(shapes.get(m) or []) != 2 or shapes[m][0] != 1:
        return None
    k = shapes[m][1]
    a = np.zeros((k, int(np.prod(shape))))
    try:
        for j, v in form[1].items():
            a[j] = np.broadcast_to(v, shape).reshape(-1)
        b = np.broadcast_to(form[2], shape).reshape(-1)
    except (ValueError, IndexError):
        return None
    return m, a, b


def _linear(t: str, producer: dict, consts: dict, depth: int = 0):
    """(M, {j: coefficient array}, bias array) with t = Σ M[0, j]·coefⱼ + bias, arrays in their
    broadcast shapes; M is None for a constant. None when t is not of that form."""
    from onnx import helper

    if t in consts:
        return None, {}, np.asarray(consts[t], np.float64)
    nd = producer.get(t)
    if nd is None or depth > 12:
        return None
    if nd.op_type == "Gather" and len(nd.input) == 2 and nd.input[1] in consts:
        idx = np.asarray(consts[nd.input[1]])
        axis = next((helper.get_attribute_value(a) for a in nd.attribute if a.name == "axis"), 0)
        if idx.size != 1 or axis not in (1, -1) or nd.input[0] in consts:
            return None
        shape = (1,) + idx.shape
        return nd.input[0], {int(idx.reshape(-1)[0]): np.ones(shape)}, np.zeros(shape)
    if nd.op_type not in ("Add", "Sub", "Mul", "Neg"):
        return None
    args = [_linear(i, producer, consts, depth + 1) for i in nd.input]
    if any(a is None for a in args):
        return None
    mats = {a[0] for a in args if a[0] is not None}
    if len(mats) > 1:
        return None
    m = next(iter(mats), None)
    if nd.op_type == "Neg":
        (_, co, b), = args
        return m, {j: -v for j, v in co.items()}, -b
    (_, ca, ba), (_, cb, bb) = args
    if nd.op_type == "Mul":
        if ca and cb:
            return None          # a product of two runtime terms is not affine
        co, scale = (ca, bb) if ca else (cb, ba)
        return m, {j: v * scale for j, v in co.items()}, ba * bb
    sign = 1.0 if nd.op_type == "Add" else -1.0
    co = dict(ca)
    for j, v in cb.items():
        co[j] = co[j] + sign * v if j in co else sign * v
    return m, co, ba + sign * bb


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
    """Turn 4-D Adds of two runtime tensors into `Sum`.

    onnx2tf 1.29's Add has a "rescue guard" that compares its NHWC result with the ONNX (NCHW)
    output shape, finds them different and transposes both inputs to NCHW; the following
    PReLUs and depthwise convolutions then fall back to slow forms wrapped in TRANSPOSEs. Its
    Sum has no such guard and lowers to ADD_N (tflite_passes.add_n_to_add makes that an ADD).
    This holds after the lowered samplers too: their crops reach onnx2tf channels-last, like
    the backbone's tensors (see lower_gridsample). Returns (model, count)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    rank = {vi.name: len(vi.type.tensor_type.shape.dim)
            for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    static = {i.name for i in model.graph.initializer} | \
        {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    count = 0
    for n in model.graph.node:
        if n.op_type == "Add" and len(n.input) == 2 and all(rank.get(i) == 4 and i not in static for i in n.input):
            n.op_type = "Sum"
            count += 1
    return model, count

