"""ONNX → ONNX: the general `GridSample` lowering (modes bilinear and nearest; padding zeros,
border and reflection; align_corners 0 and 1; any N and C; grids computed at run time), written
only with ops TFLite's GPU delegate accepts: no GATHER, no SCATTER.

For X (N, C, H, W) and a grid (N, Ho, Wo, 2), with P = Ho·Wo sample points:
  1. the grid's x and y planes are un-normalised to pixel coordinates as ONNX Runtime does
     (align_corners=1: (g+1)/2·(S−1); 0: ((g+1)·S−1)/2), then the coordinate padding rule is
     applied (border: clamp into [0, S−1]; reflection: reflect into [lo, hi] — [0, S−1] or
     [−½, S−½] — then clamp into [0, S−1]);
  2. each axis gets a weight matrix W (N·P, S) against a constant index ramp j = 0…S−1: for
     bilinear the two corners ⌊x⌋ and ⌊x⌋+1 with weights 1−f and f, for nearest the corner
     round-half-to-even(x) with weight 1 (written with FLOOR: the delegate has no ROUND); a
     corner c becomes the one-hot row relu(1 − |c − j|), so a corner outside [0, S−1] (zeros
     padding) gets no weight at all;
  3. the map is contracted separably: B = Wx · Xᵀ over the width (a batched MatMul, (N, P, W) ×
     (N, W, C·H)), then B is weighted by Wy and summed over the height.

Cost (elements of the intermediates): N·P·(W + H) for the weights, N·P·C·H for B (the largest),
plus the N·C·H·W map transposed once; MAX_ELEMENTS bounds N·P·C·H. The corner arithmetic is exact
in fp16 while every coordinate and ramp value is an integer ≤ 2048, so H and W are limited to
FP16_EXACT; the fractional weights carry the fp16 spacing of the coordinate (≤ 2⁻¹ near 2048,
2⁻⁶ below 32)."""
from __future__ import annotations

import numpy as np

from .base import ConversionError

STEP = "onnx-lower-gridsample"
FP16_EXACT = 2048           # fp16 represents every integer up to 2048 exactly
MAX_ELEMENTS = 1 << 26      # N·P·C·H: 64 Mi elements (256 MiB in fp32) for the largest intermediate
MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest"}
PADDINGS = ("zeros", "border", "reflection")


def check(n, xs, gs) -> tuple[str, str, int]:
    """(mode, padding, align_corners) of GridSample node `n` with map shape `xs` and grid shape
    `gs`, or a ConversionError naming what the general lowering does not cover."""
    from onnx import helper
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    mode, pad = (v.decode() if isinstance(v, bytes) else v
                 for v in (attrs.get("mode", "bilinear"), attrs.get("padding_mode", "zeros")))
    if mode not in MODES:
        raise ConversionError(STEP, f"GridSample mode {mode!r} is not supported (only bilinear/linear "
                                    "and nearest)", node=n.name)
    if pad not in PADDINGS:
        raise ConversionError(STEP, f"GridSample padding_mode {pad!r} is not supported", node=n.name)
    for tensor, dims in ((n.input[0], xs), (n.input[1], gs)):
        if not dims or len(dims) != 4:
            raise ConversionError(STEP, f"tensor {tensor!r} needs a static rank-4 shape (got {dims})", node=n.name)
        for i, d in enumerate(dims):
            if d is None or d <= 0:
                raise ConversionError(STEP, f"tensor {tensor!r} has a dynamic dimension {i} (shape {dims}); "
                                            "static shapes are required", node=n.name)
    nb, c, h, w = xs
    if gs[0] != nb or gs[3] != 2:
        raise ConversionError(STEP, f"grid shape {gs} does not fit the map {xs}", node=n.name)
    if h > FP16_EXACT or w > FP16_EXACT:
        raise ConversionError(STEP, f"feature map {h}×{w} exceeds {FP16_EXACT} along an axis "
                                    "(fp16-exact corner indices)", node=n.name)
    p = gs[1] * gs[2]
    if nb * p * c * h > MAX_ELEMENTS:
        raise ConversionError(STEP, f"too large: N·P·C·H = {nb}·{p}·{c}·{h} = {nb * p * c * h} elements "
                                    f"> {MAX_ELEMENTS}", node=n.name)
    return MODES[mode], pad, int(attrs.get("align_corners", 0))


def emit(n, xs, gs, mode: str, pad: str, align: int, p: str, out: list, node, const) -> None:
    """Append to `out` the nodes computing GridSample `n`'s output (same tensor name) from its inputs."""
    from onnx import helper
    nb, c, h, w = xs
    pts = gs[1] * gs[2]
    flat = node(out, "Reshape", [n.input[1], const([nb * pts, 2], np.int64)], p)
    # Each grid coordinate repeated along its axis' ramp, (N·P, S), by a MatMul with a 0/1 matrix:
    # exact, and every elementwise op after it has a constant operand broadcast into its shape
    # (the GPU delegate has no two-sided broadcast, and no 2-D slice for a Split).
    wx = _weights(node(out, "MatMul", [flat, const(np.eye(2, dtype=np.float32)[:, [0] * w])], p),
                  w, mode, pad, align, p, out, node, const)                                 # (N·P, W)
    wy = _weights(node(out, "MatMul", [flat, const(np.eye(2, dtype=np.float32)[:, [1] * h])], p),
                  h, mode, pad, align, p, out, node, const)                                 # (N·P, H)
    xt = node(out, "Transpose", [node(out, "Reshape", [n.input[0], const([nb, c * h, w], np.int64)], p)], p,
              perm=[0, 2, 1])                                                               # (N, W, C·H)
    b = node(out, "MatMul", [node(out, "Reshape", [wx, const([nb, pts, w], np.int64)], p), xt], p)  # (N, P, C·H)
    b = node(out, "Reshape", [b, const([nb * pts, c, h], np.int64)], p)
    wy = node(out, "Reshape", [wy, const([nb * pts, 1, h], np.int64)], p)
    y = node(out, "ReduceSum", [node(out, "Mul", [b, wy], p), const([2], np.int64)], p, keepdims=0)  # (N·P, C)
    y = node(out, "Transpose", [node(out, "Reshape", [y, const([nb, pts, c], np.int64)], p)], p, perm=[0, 2, 1])
    out.append(helper.make_node("Reshape", [y, const([nb, c, gs[1], gs[2]], np.int64)], [n.output[0]],
                                name=f"{p}_out"))


def _weights(g: str, size: int, mode: str, pad: str, align: int, p: str, out: list, node, const) -> str:
    """The (N·P, size) interpolation weights of normalised coordinates `g` (N·P, size: each row one
    coordinate, repeated) along one axis."""
    if align:
        x = node(out, "Mul", [node(out, "Add", [g, const(1.0)], p), const((size - 1) / 2)], p)
    else:
        x = node(out, "Mul", [node(out, "Add", [node(out, "Mul", [g, const(float(size))], p),
                                                const(float(size - 1))], p), const(0.5)], p)
    if pad == "border":
        x = _clamp(x, 0.0, size - 1.0, p, out, node, const)
    elif pad == "reflection":
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        x = _clamp(_reflect(x, lo, hi, p, out, node, const), 0.0, size - 1.0, p, out, node, const)
    ramp = const(np.arange(size, dtype=np.float32).reshape(1, size))

    def onehot(corner: str) -> str:
        d = node(out, "Abs", [node(out, "Sub", [corner, ramp], p)], p)
        return node(out, "Relu", [node(out, "Sub", [const(1.0), d], p)], p)

    if mode == "nearest":
        return onehot(_round_half_even(x, p, out, node, const))
    x0 = node(out, "Floor", [x], p)
    f = node(out, "Sub", [x, x0], p)
    w0 = node(out, "Mul", [onehot(x0), node(out, "Sub", [const(1.0), f], p)], p)
    w1 = node(out, "Mul", [onehot(node(out, "Add", [x0, const(1.0)], p)), f], p)
    return node(out, "Add", [w0, w1], p)


def _clamp(x: str, lo: float, hi: float, p: str, out: list, node, const) -> str:
    return node(out, "Min", [node(out, "Max", [x, const(lo)], p), const(hi)], p)


def _reflect(x: str, lo: float, hi: float, p: str, out: list, node, const) -> str:
    """x reflected into [lo, hi]: t = |x − lo| mod 2s, then s − |t − s| + lo (s = hi − lo)."""
    s = hi - lo
    if s <= 0:
        return node(out, "Mul", [x, const(0.0)], p)   # a 1-pixel axis: every coordinate is lo
    t = node(out, "Abs", [node(out, "Sub", [x, const(lo)], p)], p)
    t = node(out, "Sub", [t, node(out, "Mul", [node(out, "Floor", [node(out, "Mul", [t, const(1 / (2 * s))], p)], p),
                                               const(2 * s)], p)], p)
    r = node(out, "Sub", [const(s), node(out, "Abs", [node(out, "Sub", [t, const(s)], p)], p)], p)
    return node(out, "Add", [r, const(lo)], p)


def _round_half_even(x: str, p: str, out: list, node, const) -> str:
    """x rounded half to even (ONNX Runtime's nearbyint) without ROUND, which the GPU delegate
    lacks: r = ⌊x + ½⌋, less 1 where x + ½ is an integer (a tie) and r is odd. t = x + ½ − r is exact
    and, where r is odd (|x + ½| ≥ 1), either 0 or ≥ 2⁻²⁴, so relu(1 − t·2¹²·2¹²) is exactly the
    tie indicator (two factors of 2¹²: 2²⁴ is not an fp16 number, and 0·inf would be NaN)."""
    v = node(out, "Add", [x, const(0.5)], p)
    r = node(out, "Floor", [v], p)
    t = node(out, "Mul", [node(out, "Mul", [node(out, "Sub", [v, r], p), const(4096.0)], p), const(4096.0)], p)
    tie = node(out, "Relu", [node(out, "Sub", [const(1.0), t], p)], p)
    odd = node(out, "Sub", [r, node(out, "Mul", [node(out, "Floor", [node(out, "Mul", [r, const(0.5)], p)], p),
                                                 const(2.0)], p)], p)
    return node(out, "Sub", [r, node(out, "Mul", [tie, odd], p)], p)
