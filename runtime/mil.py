"""A NumPy reference evaluator for Core ML MIL programs, so Core ML artifacts can be checked on
any OS (Core ML's own `predict` runs only on macOS).

The .mlpackage is loaded back into a MIL program (coremltools' milproto loader, weights as NumPy
constants) and evaluated op by op. Each supported op follows its definition in coremltools'
MIL op reference; an op outside the set raises UnsupportedMILOpError naming it. fp16 values are
stored as float16 after every op (arithmetic in float32), as an fp16 program stores them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import MeshportError


class UnsupportedMILOpError(MeshportError):
    """The program contains an op the reference evaluator does not implement."""


OpFn = Callable[[dict[str, Any]], Any]
OPS: dict[str, OpFn] = {}


def op(name: str) -> Callable[[OpFn], OpFn]:
    def wrap(fn: OpFn) -> OpFn:
        if name in OPS:
            raise ValueError(f"MIL op {name!r} registered twice")
        OPS[name] = fn
        return fn
    return wrap


def _f(x: Any) -> np.ndarray:
    return np.asarray(x)


# -- elementwise -------------------------------------------------------------------------------
for _name, _fn in {"add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide,
                   "maximum": np.maximum, "minimum": np.minimum, "pow": np.power}.items():
    op(_name)(lambda a, _fn=_fn: _fn(_f(a["x"]), _f(a["y"])))

for _name, _fn in {"floor": np.floor, "ceil": np.ceil, "sqrt": np.sqrt, "abs": np.abs, "exp": np.exp,
                   "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0)}.items():
    op(_name)(lambda a, _fn=_fn: _fn(_f(a["x"])))


@op("inverse")
def _inverse(a):  # y = 1 / (x + epsilon), epsilon defaults to 1e-4
    return 1.0 / (_f(a["x"]) + a.get("epsilon", 1e-4))


@op("sigmoid")
def _sigmoid(a):
    x = _f(a["x"]).astype(np.float64)
    return (1.0 / (1.0 + np.exp(-x))).astype(_f(a["x"]).dtype)


@op("log")
def _log(a):  # y = log(x + epsilon), epsilon defaults to 1e-45
    x = _f(a["x"])
    eps = a.get("epsilon")
    return np.log(x.astype(np.float32) + np.float32(1e-45 if eps is None else eps))


@op("softmax")
def _softmax(a):  # exp(x) / sum(exp(x), axis), axis defaults to -1
    x = _f(a["x"]).astype(np.float32)
    axis = -1 if a.get("axis") is None else int(a["axis"])
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@op("clip")
def _clip(a):
    return np.minimum(np.maximum(_f(a["x"]), a["alpha"]), a["beta"])


@op("prelu")
def _prelu(a):
    x, alpha = _f(a["x"]), _f(a["alpha"])
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return np.where(x >= 0, x, x * alpha.reshape(shape))


@op("leaky_relu")
def _leaky_relu(a):
    x = _f(a["x"])
    return np.where(x >= 0, x, x * a.get("alpha", 0.01))


@op("cast")
def _cast(a):
    return _f(a["x"]).astype({"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": bool}[a["dtype"]])


@op("linear")
def _linear(a):  # y = x · weightᵀ + bias, weight (D_out, D_in)
    x, w = _f(a["x"]), _f(a["weight"])
    y = np.matmul(x, w.T)
    return y + _f(a["bias"]) if a.get("bias") is not None else y


@op("matmul")
def _matmul(a):
    x, y = _f(a["x"]), _f(a["y"])
    if a.get("transpose_x", False):
        x = np.swapaxes(x, -1, -2)
    if a.get("transpose_y", False):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


# -- shape -------------------------------------------------------------------------------------
@op("reshape")
def _reshape(a):
    return _f(a["x"]).reshape([int(s) for s in _f(a["shape"])])


@op("expand_dims")
def _expand_dims(a):  # a new axis of size 1 at each of `axes` (negative: from the end of the result)
    x = _f(a["x"])
    axes = [int(v) for v in np.atleast_1d(_f(a["axes"]))]
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(v % rank for v in axes)))


@op("tile")
def _tile(a):  # x repeated reps[i] times along axis i (len(reps) == rank of x)
    x, reps = _f(a["x"]), [int(v) for v in _f(a["reps"])]
    if len(reps) != x.ndim:
        raise UnsupportedMILOpError(f"tile with {len(reps)} reps for a rank-{x.ndim} tensor")
    return np.tile(x, reps)


@op("transpose")
def _transpose(a):
    return np.transpose(_f(a["x"]), [int(p) for p in _f(a["perm"])])


@op("concat")
def _concat(a):
    if a.get("interleave", False):
        raise UnsupportedMILOpError("concat with interleave=True")
    return np.concatenate([_f(v) for v in a["values"]], axis=int(a["axis"]))


@op("stack")
def _stack(a):
    return np.stack([_f(v) for v in a["values"]], axis=int(a["axis"]))


@op("gather")
def _gather(a):
    if int(a.get("batch_dims", 0)) != 0:
        raise UnsupportedMILOpError("gather with batch_dims != 0")
    x, idx = _f(a["x"]), _f(a["indices"]).astype(np.int64)
    axis = int(a.get("axis", 0))
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take(x, idx, axis=axis)


@op("slice_by_index")
def _slice_by_index(a):
    x = _f(a["x"])
    begin, end = _f(a["begin"]).astype(int), _f(a["end"]).astype(int)
    stride = _f(a["stride"]).astype(int) if a.get("stride") is not None else np.ones(x.ndim, int)
    bm = a.get("begin_mask") if a.get("begin_mask") is not None else [False] * x.ndim
    em = a.get("end_mask") if a.get("end_mask") is not None else [False] * x.ndim
    sm = a.get("squeeze_mask") if a.get("squeeze_mask") is not None else [False] * x.ndim
    sl = tuple(slice(None if bm[i] else begin[i], None if em[i] else end[i], stride[i]) for i in range(x.ndim))
    out = x[sl]
    return out.squeeze(axis=tuple(i for i in range(x.ndim) if sm[i])) if any(sm) else out


def _reduce(fn):
    def impl(a):
        axes = a.get("axes")
        axes = None if axes is None else tuple(int(v) for v in _f(axes).reshape(-1))
        return fn(_f(a["x"]), axis=axes, keepdims=bool(a.get("keep_dims", False)))
    return impl


op("reduce_min")(_reduce(np.min))
op("reduce_max")(_reduce(np.max))
op("reduce_mean")(_reduce(np.mean))
op("reduce_sum")(_reduce(np.sum))


# -- spatial -----------------------------------------------------------------------------------
def _spatial_pads(a, in_hw, kernel, strides, dilations) -> list[tuple[int, int]]:
    kind = a.get("pad_type", "valid")
    if kind == "custom":
        p = [int(v) for v in _f(a["pad"])]
        return [(p[0], p[1]), (p[2], p[3])]
    if kind == "valid":
        return [(0, 0), (0, 0)]
    pads = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        pads.append((big, small) if kind == "same_lower" else (small, big))
    return pads


@op("pad")
def _pad(a):
    x = _f(a["x"])
    p = [int(v) for v in _f(a["pad"])]
    mode = a.get("mode", "constant")
    width = [(0, 0)] * (x.ndim - len(p) // 2) + [(p[2 * i], p[2 * i + 1]) for i in range(len(p) // 2)]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=a.get("constant_val", 0.0))
    return np.pad(x, width, mode={"reflect": "reflect", "replicate": "edge"}[mode])


@op("conv")
def _conv(a):
    x, w = _f(a["x"]).astype(np.float32), _f(a["weight"]).astype(np.float32)
    n, c, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    groups = int(a.get("groups", 1))
    strides = [int(v) for v in _f(a["strides"])] if a.get("strides") is not None else [1, 1]
    dil = [int(v) for v in _f(a["dilations"])] if a.get("dilations") is not None else [1, 1]
    (pt, pb), (pl, pr) = _spatial_pads(a, (h, wd), (kh, kw), strides, dil)
    x = np.pad(x, [(0, 0), (0, 0), (pt, pb), (pl, pr)])
    oh = (x.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (x.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    # Gather every kernel tap as a strided view: (N, C, kh, kw, oh, ow).
    taps = np.empty((n, c, kh, kw, oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dil[0], j * dil[1]
            taps[:, :, i, j] = x[:, :, r0:r0 + strides[0] * (oh - 1) + 1:strides[0],
                                 c0:c0 + strides[1] * (ow - 1) + 1:strides[1]]
    out = np.empty((n, cout, oh, ow), np.float32)
    og = cout // groups
    for g in range(groups):
        t = taps[:, g * cin_g:(g + 1) * cin_g]                      # (N, cin_g, kh, kw, oh, ow)
        k = w[g * og:(g + 1) * og]                                  # (og, cin_g, kh, kw)
        out[:, g * og:(g + 1) * og] = np.einsum("ncklhw,ockl->nohw", t, k, optimize=True)
    if a.get("bias") is not None:
        out += _f(a["bias"]).astype(np.float32).reshape(1, -1, 1, 1)
    return out


@op("max_pool")
def _max_pool(a):
    x = _f(a["x"])
    kh, kw = [int(v) for v in _f(a["kernel_sizes"])]
    sh, sw = [int(v) for v in _f(a["strides"])]
    if a.get("ceil_mode", False):
        raise UnsupportedMILOpError("max_pool with ceil_mode=True")
    (pt, pb), (pl, pr) = _spatial_pads(a, x.shape[2:], (kh, kw), (sh, sw), (1, 1))
    x = np.pad(x, [(0, 0), (0, 0), (pt, pb), (pl, pr)], constant_values=-np.inf)
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = np.full(x.shape[:2] + (oh, ow), -np.inf, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out = np.maximum(out, x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw])
    return out


def _source_coords(g: np.ndarray, size: int, mode: str, align: bool) -> np.ndarray:
    """Pixel coordinates (0 … size-1 are pixel centres) of resample coordinates `g`, in float32
    as torch's grid_sample computes them."""
    g = g.astype(np.float32)
    if mode == "normalized_minus_one_to_one":
        return (g + 1) * np.float32((size - 1) / 2) if align else (g + 1) * np.float32(size / 2) - np.float32(0.5)
    if mode == "normalized_zero_to_one":
        return g * np.float32(size - 1) if align else g * np.float32(size) - np.float32(0.5)
    if mode == "unnormalized":
        return g
    raise UnsupportedMILOpError(f"resample coordinates_mode={mode}")


def _pad_coords(p: np.ndarray, size: int, pad_mode: str) -> np.ndarray:
    """Moves coordinates outside the image to where `pad_mode` reads them from: border clamps;
    reflection mirrors about the edge pixels' centres, symmetric about their outer edges (then,
    like torch, clamps to the centres: a value beyond the last centre is the edge value)."""
    if pad_mode == "constant":
        return p
    if pad_mode in ("reflection", "symmetric"):
        low, twice_span = (0.0, 2.0 * (size - 1)) if pad_mode == "reflection" else (-0.5, 2.0 * size)
        if twice_span == 0:
            return np.zeros_like(p)
        d = np.abs(p - np.float32(low))
        extra = d - np.trunc(d / np.float32(twice_span)) * np.float32(twice_span)
        p = np.minimum(extra, np.float32(twice_span) - extra) + np.float32(low)
    elif pad_mode != "border":
        raise UnsupportedMILOpError(f"resample padding_mode={pad_mode}")
    return np.clip(p, 0, size - 1).astype(np.float32)


def _sample(x: np.ndarray, px: np.ndarray, py: np.ndarray, sampling_mode: str, fill: float) -> np.ndarray:
    """x (N, C, H, W) at pixel coordinates px, py (N, Ho, Wo): bilinear, or nearest (round half to
    even, as torch's grid_sample); a tap outside the image reads `fill`."""
    n, c, h, w = x.shape
    if sampling_mode == "bilinear":
        x0, y0 = np.floor(px), np.floor(py)
        fx, fy = px - x0, py - y0
        taps = [(y0 + dy, x0 + dx, wy * wx)
                for dy, wy in ((0, 1 - fy), (1, fy)) for dx, wx in ((0, 1 - fx), (1, fx))]
    elif sampling_mode == "nearest":
        taps = [(np.rint(py), np.rint(px), np.ones_like(px))]
    else:
        raise UnsupportedMILOpError(f"resample sampling_mode={sampling_mode}")
    out = np.zeros((n, c) + px.shape[1:], np.float32)
    b = np.arange(n).reshape((n,) + (1,) * (px.ndim - 1))
    for yi, xi, weight in taps:
        xi, yi = xi.astype(np.int64), yi.astype(np.int64)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        vals = x[b, :, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]            # (N, Ho, Wo, C)
        vals = np.where(inside[..., None], vals, np.float32(fill))
        out += np.moveaxis(vals * weight[..., None], -1, 1)
    return out


def _resample_at(x, gx, gy, a) -> np.ndarray:
    x = _f(x).astype(np.float32)
    align = bool(a.get("align_corners", False))
    mode = a.get("coordinates_mode", "normalized_minus_one_to_one")
    pad_mode = a.get("padding_mode", "constant")
    px = _pad_coords(_source_coords(gx, x.shape[3], mode, align), x.shape[3], pad_mode)
    py = _pad_coords(_source_coords(gy, x.shape[2], mode, align), x.shape[2], pad_mode)
    return _sample(x, px, py, a.get("sampling_mode", "bilinear"), float(a.get("padding_value", 0.0)))


@op("resample")
def _resample(a):
    """x (N, C, H, W) sampled at `coordinates` (N, H_out, W_out, 2), given as (x, y)."""
    coords = _f(a["coordinates"])
    return _resample_at(a["x"], coords[..., 0], coords[..., 1], a)


@op("affine")
def _affine(a):
    """x (N, C, H, W) sampled at output pixel coordinates, normalised to [-1, 1] per align_corners,
    moved by transform_matrix (D, 6) rows [a0, a1, a2, b0, b1, b2]: x' = a0·x + a1·y + a2,
    y' = b0·x + b1·y + b2, D = N or 1."""
    x = _f(a["x"])
    ho, wo = int(a["output_height"]), int(a["output_width"])
    m = _f(a["transform_matrix"]).astype(np.float32).reshape(-1, 6)
    m = np.broadcast_to(m, (x.shape[0], 6))
    align = bool(a.get("align_corners", False))

    def base(size):  # output pixel centres in [-1, 1], as torch's affine_grid places them
        if size == 1:
            return np.zeros(1, np.float32)
        t = np.linspace(-1, 1, size, dtype=np.float32)
        return t if align else t * np.float32((size - 1) / size)
    ys, xs = np.meshgrid(base(ho), base(wo), indexing="ij")                      # (Ho, Wo)
    coef = m[:, :, None, None]
    gx = coef[:, 0] * xs + coef[:, 1] * ys + coef[:, 2]
    gy = coef[:, 3] * xs + coef[:, 4] * ys + coef[:, 5]
    return _resample_at(x, gx, gy, a)


# -- program -----------------------------------------------------------------------------------
class MILProgram:
    """A loaded `main` function of an .mlpackage, ready to evaluate."""

    def __init__(self, path: Path | str):
        import coremltools as ct
        from coremltools.converters.mil.frontend.milproto.load import load as milload

        path = Path(path)
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
        prog = milload(spec, specification_version=spec.specificationVersion,
                       file_weights_dir=str(path / "Data" / "com.apple.CoreML" / "weights"))
        self.function = prog.functions["main"]
        self.ops = list(self.function.operations)
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]
        self.input_dtypes = {k: _np_dtype(v.dtype) for k, v in self.function.inputs.items()}
        missing = sorted({o.op_type for o in self.ops} - set(OPS) - {"const"})
        if missing:
            raise UnsupportedMILOpError(f"{path.name}: MIL ops without a reference implementation: {missing}")

    @property
    def op_types(self) -> list[str]:
        return sorted({o.op_type for o in self.ops})

    def run(self, feeds: dict[str, np.ndarray], trace: bool = False) -> dict[str, np.ndarray]:
        env: dict[str, Any] = {}
        for name in self.input_names:
            if name not in feeds:
                raise KeyError(f"missing input {name!r}; inputs are {self.input_names}")
            env[name] = np.asarray(feeds[name]).astype(self.input_dtypes[name])
        for o in self.ops:
            if o.op_type == "const":
                val = o.outputs[0].val
                env[o.outputs[0].name] = np.asarray(val) if not isinstance(val, (str, bool)) else val
                continue
            args = {k: _arg(v, env) for k, v in o.inputs.items()}
            result = OPS[o.op_type](args)
            outs = result if isinstance(result, tuple) else (result,)
            for var, value in zip(o.outputs, outs):
                value = np.asarray(value)
                dt = _np_dtype(var.dtype)
                if dt is not None and value.dtype != dt:
                    value = value.astype(dt)
                env[var.name] = value
        return {name: env[name] for name in self.output_names} if not trace else dict(env)


def _arg(v: Any, env: dict[str, Any]) -> Any:
    if isinstance(v, (list, tuple)):
        return [_arg(x, env) for x in v]
    if v.name in env:
        return env[v.name]
    if v.val is not None:
        return v.val
    raise KeyError(f"MIL value {v.name!r} used before it is defined")


def _np_dtype(t: Any):
    from coremltools.converters.mil.mil import types
    if t is None:
        return None
    try:
        if types.is_tensor(t):
            t = t.get_primitive()
    except Exception:
        pass
    for mil_t, np_t in ((types.fp16, np.float16), (types.fp32, np.float32), (types.int32, np.int32),
                        (types.bool, bool), (types.fp64, np.float64), (types.int64, np.int64)):
        if t == mil_t:
            return np_t
    return None
