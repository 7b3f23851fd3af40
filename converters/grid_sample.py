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
plus the N·C·H·W map transposed once; MAX_ELEMENTS bounds N·P·C·H and N·P times the padded axis.

fp16 (the GPU delegate's default arithmetic) represents integers exactly only up to 2048. An axis of
up to FP16_EXACT pixels is lowered as above: its corner arithmetic is exact while every coordinate
and ramp value is an integer ≤ 2048. A longer axis is *split* (see _split_weights): each corner is
an integer c = b·B + o (B a power of two with B² ≥ S, so b < B ≤ 2048 and o < B), its padding rule
is applied to the integer corner as ONNX Runtime does (border: clamped; reflection: reflected,
then clamped), and its weight row is the outer product of a one-hot over the blocks b and a
one-hot over the offsets o — no ramp value or compared integer exceeds 2048, so in fp16 the
weight goes to exactly one pixel per corner (an unsplit ramp above 2048 rounds neighbouring
values together and sums two or three pixels). The fp16 *coordinate* itself keeps the spacing of
fp16 numbers (2 px above 2048, 4 px above 4096): the split makes the sample the right pixel for
that coordinate, not the coordinate finer (and constants such as S−1 round too: a border corner is
clamped in split form, exactly; a reflected one can land up to that spacing off near the far edge,
then is clamped into the map). In fp32 the split axis follows ONNX Runtime's own
arithmetic (its un-normalisation formula, weights from the raw coordinate), so the result
agrees to the rounding of the contraction. Axes are limited to 2048² = MAX_AXIS pixels."""
from __future__ import annotations

import numpy as np

from .base import ConversionError

STEP = "onnx-lower-gridsample"
FP16_EXACT = 2048           # fp16 represents every integer up to 2048 exactly
MAX_AXIS = FP16_EXACT ** 2  # a split axis: blocks and offsets each ≤ 2048
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
    if h > MAX_AXIS or w > MAX_AXIS:
        raise ConversionError(STEP, f"feature map {h}×{w} exceeds {MAX_AXIS} = {FP16_EXACT}² along an axis "
                                    "(fp16-exact block and offset indices)", node=n.name)
    p = gs[1] * gs[2]
    if nb * p * c * h > MAX_ELEMENTS:
        raise ConversionError(STEP, f"too large: N·P·C·H = {nb}·{p}·{c}·{h} = {nb * p * c * h} elements "
                                    f"> {MAX_ELEMENTS}", node=n.name)
    for axis, size in (("W", w), ("H", h)):
        padded = _padded(size)
        if nb * p * padded > MAX_ELEMENTS:
            raise ConversionError(STEP, f"too large: N·P·{axis} = {nb}·{p}·{padded} = {nb * p * padded} weight "
                                        f"elements > {MAX_ELEMENTS}", node=n.name)
    return MODES[mode], pad, int(attrs.get("align_corners", 0))


def emit(n, xs, gs, mode: str, pad: str, align: int, p: str, out: list, node, const,
         channels_last: bool = False) -> None:
    """Append to `out` the nodes computing GridSample `n`'s output (same tensor name) from its inputs.
    With `channels_last` the output leaves as the fused lowering's crops do: (N, Ho, Wo, C) →
    Transpose to NCHW → an identity 1×1 depthwise Conv, so onnx2tf treats it as channels-last
    like the convolutions that consume it (a plain NCHW reshape there meets them in the wrong
    layout at the next residual add); tflite_passes.drop_identity_convs removes the Conv."""
    from onnx import helper
    nb, c, h, w = xs
    pts = gs[1] * gs[2]
    flat = node(out, "Reshape", [n.input[1], const([nb * pts, 2], np.int64)], p)
    # Each grid coordinate repeated along its axis' ramp, (N·P, S), by a MatMul with a 0/1 matrix:
    # exact, and every elementwise op after it has a constant operand broadcast into its shape
    # (the GPU delegate has no two-sided broadcast, and no 2-D slice for a Split).
    def axis_weights(axis: int, size: int) -> str:
        if size > FP16_EXACT:
            return _split_weights(flat, axis, size, nb, pts, mode, pad, align, p, out, node, const)
        return _weights(node(out, "MatMul", [flat, const(np.eye(2, dtype=np.float32)[:, [axis] * size])], p),
                        size, mode, pad, align, p, out, node, const)

    wx = axis_weights(0, w)                                                                 # (N·P, W)
    wy = axis_weights(1, h)                                                                 # (N·P, H)
    # (N, C, H, W) → (N, W, C, H) → (N, W, C·H): transposed while 4-D, which onnx2tf maps through its
    # channels-last input; a 3-D Transpose after the Reshape it gets wrong when C = 1.
    xt = node(out, "Reshape", [node(out, "Transpose", [n.input[0]], p, perm=[0, 3, 1, 2]),
                               const([nb, w, c * h], np.int64)], p)                        # (N, W, C·H)
    b = node(out, "MatMul", [node(out, "Reshape", [wx, const([nb, pts, w], np.int64)], p), xt], p)  # (N, P, C·H)
    b = node(out, "Reshape", [b, const([nb * pts, c, h], np.int64)], p)
    wy = node(out, "Reshape", [wy, const([nb * pts, 1, h], np.int64)], p)
    y = node(out, "ReduceSum", [node(out, "Mul", [b, wy], p), const([2], np.int64)], p, keepdims=0)  # (N·P, C)
    if channels_last:
        y = node(out, "Transpose", [node(out, "Reshape", [y, const([nb, gs[1], gs[2], c], np.int64)], p)], p,
                 perm=[0, 3, 1, 2])
        out.append(helper.make_node("Conv", [y, const(np.ones((c, 1, 1, 1), np.float32))], [n.output[0]],
                                    name=f"{p}_out", group=c, kernel_shape=[1, 1]))
        return
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


# -- axes over 2048 pixels: corners split into block and offset ------------------------------------

def _block(size: int) -> int:
    """The split's block length B for an axis of `size` pixels: the smallest power of two with
    B² ≥ size (blocks and offsets both < B; the one-hots cost N·P·(S/B + B), not N·P·S)."""
    return 1 << max(0, (size - 1).bit_length() + 1) // 2


def _padded(size: int) -> int:
    """Columns of an axis' weight matrix before the slice back to `size` (the split pads to whole blocks)."""
    if size <= FP16_EXACT:
        return size
    b = _block(size)
    return -(-size // b) * b


def _split_weights(flat: str, axis: int, size: int, nb: int, pts: int, mode: str, pad: str, align: int, p: str,
                   out: list, node, const) -> str:
    """The (N, P, size) interpolation weights along one axis of over FP16_EXACT pixels, from the
    grid `flat` (N·P, 2): the corners as integers split into (block, offset), every elementwise op
    on (N·P, K) tensors (K corners) with scalar constants, the one-hots tiled by 0/1 MatMuls, and
    the weight rows formed as outer products (block one-hot ⊗ weighted offset one-hot, summed over
    the corners) by one batched MatMul."""
    b = _block(size)
    blocks = -(-size // b)
    k = 2 if mode == "bilinear" else 1
    n = lambda op, inputs, **attrs: node(out, op, inputs, p, **attrs)  # noqa: E731
    g = n("MatMul", [flat, const(np.eye(2, dtype=np.float32)[:, [axis] * k])])              # (N·P, K)
    # ONNX Runtime's un-normalisation, operation for operation (its fp32 rounding, not just its formula)
    if align:
        x = n("Mul", [n("Add", [g, const(1.0)]), const((size - 1) / 2)])
    else:
        x = n("Mul", [n("Sub", [n("Mul", [n("Add", [g, const(1.0)]), const(float(size))]), const(1.0)]),
                      const(0.5)])
    c0 = n("Floor", [x])
    f = n("Sub", [x, c0])
    if mode == "bilinear":
        corner = n("Add", [c0, const(np.array([[0.0, 1.0]], np.float32))])                   # ⌊x⌋, ⌊x⌋+1
        weight = n("Add", [n("Mul", [f, const(np.array([[-1.0, 1.0]], np.float32))]),
                           const(np.array([[1.0, 0.0]], np.float32))])                        # 1−f, f
    else:
        corner, weight = _nearest_int(c0, f, n, const), None
    if pad == "reflection":
        corner = _reflect_int(corner, size, align, n, const)
    # (block, offset) of each corner: exact for any integer (B is a power of two)
    blk = n("Floor", [n("Mul", [corner, const(1.0 / b)])])
    off = n("Sub", [corner, n("Mul", [blk, const(float(b))])])
    if pad != "zeros":          # border, and reflection's results kept inside in fp16
        blk, off = _clamp_split(blk, off, size, b, n, const)
    # block one-hots (N·P, blocks, K) and weighted offset one-hots (N·P, K, B)
    tile_b = np.zeros((k, blocks * k), np.float32)
    tile_o = np.zeros((k, k * b), np.float32)
    for i in range(k):
        tile_b[i, i::k] = 1.0
        tile_o[i, i * b:(i + 1) * b] = 1.0
    ramp_b = np.repeat(np.arange(blocks, dtype=np.float32), k)[None]
    ramp_o = np.tile(np.arange(b, dtype=np.float32), k)[None]

    def onehot(v: str, tile: np.ndarray, ramp: np.ndarray) -> str:
        d = n("Abs", [n("Sub", [n("MatMul", [v, const(tile)]), const(ramp)])])
        return n("Relu", [n("Sub", [const(1.0), d])])

    hot_b = n("Reshape", [onehot(blk, tile_b, ramp_b), const([nb * pts, blocks, k], np.int64)])
    hot_o = onehot(off, tile_o, ramp_o)
    if weight is not None:
        hot_o = n("Mul", [hot_o, n("MatMul", [weight, const(tile_o)])])
    hot_o = n("Reshape", [hot_o, const([nb * pts, k, b], np.int64)])
    rows = n("Reshape", [n("MatMul", [hot_b, hot_o]), const([nb, pts, blocks * b], np.int64)])
    if blocks * b == size:
        return rows
    return n("Slice", [rows, const([0], np.int64), const([size], np.int64), const([2], np.int64)])


def _nearest_int(c0: str, f: str, n, const) -> str:
    """round-half-to-even(x) from ⌊x⌋ and the fraction f = x − ⌊x⌋ (no x + ½, which fp16 rounds
    to even from 1024 on): ⌊x⌋ + [f > ½] + [f = ½]·odd(⌊x⌋). h = f − ½ is exact where it is near 0
    and otherwise at least 2⁻²⁶ away, so relu(1 − |h|·2³⁶) is exactly [h = 0] (three factors of
    2¹²: in fp16 the product overflows to inf where h ≠ 0, which relu takes to 0)."""
    h = n("Sub", [f, const(0.5)])
    ge = n("Add", [n("Floor", [h]), const(1.0)])                                  # [h ≥ 0], h ∈ [−½, ½)
    t = n("Abs", [h])
    for _ in range(3):
        t = n("Mul", [t, const(4096.0)])
    tie = n("Relu", [n("Sub", [const(1.0), t])])
    odd = n("Sub", [c0, n("Mul", [n("Floor", [n("Mul", [c0, const(0.5)])]), const(2.0)])])
    up = n("Add", [n("Sub", [ge, tie]), n("Mul", [tie, odd])])
    return n("Add", [c0, up])


def _reflect_int(c: str, size: int, align: int, n, const) -> str:
    """Integer corners c reflected into the map as ONNX Runtime's GsReflect does (borders lo, hi =
    0, S−1 or −½, S−½; n = ⌊d / range⌋ folds of the distance d past the near border, then
    lo + r or hi − r by the parity of n), written with 0/1 selections, which are exact."""
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    span = hi - lo
    below = n("Min", [n("Relu", [n("Neg", [c])]), const(1.0)])                      # c < lo (c ≤ −1)
    above = n("Min", [n("Relu", [n("Sub", [c, const(size - 1.0)])]), const(1.0)])   # c > hi (c ≥ S)
    d = n("Relu", [n("Max", [n("Sub", [const(lo), c]), n("Sub", [c, const(hi)])])])
    folds = n("Floor", [n("Mul", [d, const(1.0 / span)])])
    r = n("Sub", [d, n("Mul", [folds, const(span)])])
    odd = n("Sub", [folds, n("Mul", [n("Floor", [n("Mul", [folds, const(0.5)])]), const(2.0)])])
    low = n("Abs", [n("Sub", [below, odd])])                                        # 1: lo + r, 0: hi − r
    refl = n("Add", [n("Mul", [low, n("Add", [r, const(lo)])]),
                     n("Mul", [n("Sub", [const(1.0), low]), n("Sub", [const(hi), r])])])
    inside = n("Sub", [n("Sub", [const(1.0), below]), above])
    return n("Add", [n("Mul", [inside, c]), n("Mul", [n("Sub", [const(1.0), inside]), refl])])


def _clamp_split(blk: str, off: str, size: int, b: int, n, const) -> tuple[str, str]:
    """Split integer corners (blk, off) clamped into [0, S−1] without forming b·B + o: below 0 →
    (0, 0); past the last pixel (bL, oL) = divmod(S−1, B) → (bL, oL)."""
    last_b, last_o = divmod(size - 1, b)
    neg = n("Min", [n("Relu", [n("Neg", [blk])]), const(1.0)])                      # blk < 0
    off = n("Mul", [off, n("Sub", [const(1.0), neg])])
    blk = n("Relu", [blk])
    over = n("Min", [n("Relu", [n("Sub", [blk, const(float(last_b))])]), const(1.0)])  # blk > bL
    blk = n("Min", [blk, const(float(last_b))])
    last = n("Relu", [n("Sub", [blk, const(last_b - 1.0)])])                         # blk = bL
    off = n("Min", [off, n("Sub", [const(float(b)), n("Mul", [last, const(float(b - last_o))])])])
    off = n("Add", [off, n("Mul", [over, n("Sub", [const(float(last_o)), off])])])
    return blk, off
