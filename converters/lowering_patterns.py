"""Pattern matching for the GridSample lowering: recognising, in an ONNX graph, how a sampler's
grid was computed (its x/y planes, affine in a crop matrix, normalised from pixels) and
MediaPipe's in-bounds masks after it — each match exact, or None."""
from __future__ import annotations

import numpy as np

def grid_planes(grid: str, producer: dict, shapes: dict, k: int) -> tuple[str, str] | None:
    """If grid = Reshape(Concat(Unsqueeze(gx, -1), Unsqueeze(gy, -1), axis=-1)) with gx, gy of
    k elements (how a stacked x/y grid exports), return (gx, gy)."""
    from onnx import helper

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


def scalar(consts: dict, t: str) -> float | None:
    v = consts.get(t)
    return float(v.reshape(())) if v is not None and v.size == 1 else None


def operands(node, consts: dict) -> tuple[str, float] | None:
    """(runtime input, scalar constant) of a two-input node with one scalar-constant input."""
    if node is None or len(node.input) != 2:
        return None
    for a, b in ((0, 1), (1, 0)):
        v = scalar(consts, node.input[b])
        if v is not None and node.input[a] not in consts:
            return node.input[a], v
    return None


def inside_planes(mask: str, producer: dict, consts: dict) -> set | None:
    """If `mask` = [Reshape](inside(p, P)·inside(q, Q)) with inside(p, n) = clip(⌊p⌋+1, 0, 1)·
    clip(⌊−p⌋+n, 0, 1) — 1 iff 0 ≤ p ≤ n−1, the model's MediaPipe mask — return {(p, P), (q, Q)}."""
    def made(t, op):
        nd = producer.get(t)
        return nd if nd is not None and nd.op_type == op else None

    def clip01(t):
        nd = made(t, "Clip")
        if nd is None or len(nd.input) != 3 or (scalar(consts, nd.input[1]), scalar(consts, nd.input[2])) != (0.0, 1.0):
            return None
        return operands(made(nd.input[0], "Add"), consts)      # (⌊…⌋, constant)

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


def affine(t: str, producer: dict, consts: dict, shapes: dict):
    """If t is affine in the entries of one (1, k) tensor M — built from Gathers of single
    columns of M, constants, Add, Sub, Neg and Mul by constants — return (M, A, b) with
    t = Σⱼ M[0, j]·A[j] + b (A: (k, n), b: (n,), over t's n elements in order); else None."""
    form = linear(t, producer, consts)
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


def linear(t: str, producer: dict, consts: dict, depth: int = 0):
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
    args = [linear(i, producer, consts, depth + 1) for i in nd.input]
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


def unnormalised(plane: str, producer: dict, consts: dict, size: int) -> str | None:
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
