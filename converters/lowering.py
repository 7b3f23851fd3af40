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
negative-index guard is a no-op (tflite_passes.strip_gather_guards).

Every other GridSample (nearest, border/reflection padding, align_corners=0, batch > 1) goes to
the general lowering in grid_sample.py (hat-function weights and matmuls, no gathers)."""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import numpy as np

from . import grid_sample
from .base import ConversionError
from .lowering_patterns import affine, grid_planes, inside_planes, unnormalised

STEP = "onnx-lower-gridsample"
FP16_EXACT = 2048  # fp16 represents every integer up to 2048 exactly
LOWERED_OUT = "/lowered_gridsample_out"  # name suffix of each lowered sampler's output node
LOWERINGS = ("fused", "general")   # fused: the fast path where its idiom is recognised (what builds use)
_LOWERING: contextvars.ContextVar[str] = contextvars.ContextVar("gridsample_lowering", default="fused")


@contextlib.contextmanager
def gridsample_lowering(name: str):
    """Within the block, lower_gridsample (and so every conversion that calls it) uses `name`:
    "general" sends every GridSample to the general lowering, the zoo's crops included (for
    side-by-side measurements; builds use "fused")."""
    if name not in LOWERINGS:
        raise ValueError(f"unknown GridSample lowering {name!r}; valid: {', '.join(LOWERINGS)}")
    token = _LOWERING.set(name)
    try:
        yield
    finally:
        _LOWERING.reset(token)


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


def lower_gridsample(model, lowering: str | None = None):
    """Return a new ModelProto with every GridSample node replaced: bilinear, zeros padding,
    align_corners=1, batch 1 by the fused gather lowering below, any other by the general one
    (grid_sample.py); with `lowering="general"` (default: the gridsample_lowering() context,
    "fused") every one by the general lowering. Raises ConversionError for a GridSample neither
    covers (mode, dynamic shapes, fp16-exact index limits, size)."""
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

    lowering = lowering or _LOWERING.get()
    if lowering not in LOWERINGS:
        raise ValueError(f"unknown GridSample lowering {lowering!r}; valid: {', '.join(LOWERINGS)}")
    samplers: list[_Sampler] = []
    general: list = []   # (node, map shape, grid shape, (mode, padding, align_corners))
    for n in model.graph.node:
        if n.op_type != "GridSample":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        mode = attrs.get("mode", b"bilinear")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pad = attrs.get("padding_mode", b"zeros")
        pad = pad.decode() if isinstance(pad, bytes) else pad
        xs, gs = shapes.get(n.input[0]), shapes.get(n.input[1])
        if mode not in ("bilinear", "linear") or pad != "zeros" or attrs.get("align_corners", 0) != 1 \
                or not xs or not gs or None in xs or None in gs or xs[0] != 1 or len(xs) != 4 \
                or lowering == "general":
            general.append((n, xs, gs, grid_sample.check(n, xs, gs)))   # not the fast path's idiom
            continue
        _, c, h_in, w_in = xs
        _, h, w, _ = gs
        if h_in < 2 or w_in < 2 or (h_in + 1) // 2 * w_in > FP16_EXACT:
            # beyond the gathers' fp16-exact flat indices (⌈H/2⌉·W ≤ 2048): the general lowering
            general.append((n, xs, gs, grid_sample.check(n, xs, gs)))
            continue
        planes = grid_planes(n.input[1], producer, shapes, h * w)
        if planes is None:
            # A grid that is one run-time tensor (not stacked from x and y planes): onnx2tf 1.29
            # fails on the gathers of its coordinate planes (it infers their indices as a list),
            # and they are not GPU-delegate ops; the general lowering has neither problem.
            general.append((n, xs, gs, grid_sample.check(n, xs, gs)))
            continue
        s = _Sampler(n, n.output[0], c, (h_in, w_in), (h, w))
        if planes is not None:  # the grid was stacked from two planes; take their pixel coordinates
            s.x = unnormalised(planes[0], producer, consts, w_in)
            s.y = unnormalised(planes[1], producer, consts, h_in)
        if s.x is not None and s.y is not None:
            mul = consumers.get(n.output[0], [])
            if len(mul) == 1 and mul[0].op_type == "Mul" and n.output[0] not in graph_outputs \
                    and shapes.get(mul[0].output[0]) == shapes.get(n.output[0]):
                other = [i for i in mul[0].input if i != n.output[0]]
                if len(other) == 1 and shapes.get(other[0]) == [1, 1, h, w] \
                        and inside_planes(other[0], producer, consts) == {(s.x, w_in), (s.y, h_in)}:
                    s.masked, s.out = True, mul[0].output[0]
            fx, fy = affine(s.x, producer, consts, shapes), affine(s.y, producer, consts, shapes)
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
    for gi, (n, xs, gs, how) in enumerate(general):
        out_nodes = []
        # Forced on the zoo's crops, the output meets convolutions: it leaves channels-last as the
        # fused crops do (graphs lowered by default keep their plain NCHW output).
        grid_sample.emit(n, xs, gs, *how, f"/gs_general_{gi}", out_nodes, node, const,
                         channels_last=lowering == "general" and n.output[0] not in graph_outputs)
        emitted.setdefault(position[id(n)], []).extend(out_nodes)
        replaced.add(id(n))

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


def _drop_dead(nodes: list, keep: set[str]) -> list:
    while True:
        used = {i for n in nodes for i in n.input} | keep
        alive = [n for n in nodes if any(o in used for o in n.output)]
        if len(alive) == len(nodes):
            return alive
        nodes = alive


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

