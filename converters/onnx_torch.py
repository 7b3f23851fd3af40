"""ONNX → torch: a module that executes an ONNX graph with torch operators, so that a model given
as ONNX can take the torch → Core ML path (coremltools reads no ONNX). Every initializer is a
buffer; every node whose inputs are all known before run time (constants, shapes of static
tensors) is evaluated once, when the module is made, so a trace holds only the data path.

It covers the operators torch's exporters write for convolutional networks with spatial
transformers (convolutions, pooling, GEMM/MatMul, normalisation, element-wise and shape ops,
Resize, GridSample, AffineGrid); `unsupported(proto)` names any other node before a build
starts. Its outputs are checked against ONNX Runtime on the source file by the Core ML step's
gate, like every artifact."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .base import ConversionError

STEP = "onnx->torch"
_OPS: dict[str, Callable[..., Any]] = {}


def _op(*names: str):
    def wrap(fn):
        for n in names:
            _OPS[n] = fn
        return fn
    return wrap


def unsupported(proto) -> list[str]:
    """'op (node name)' of every node this executor cannot run."""
    return [f"{n.op_type} ({n.name or n.output[0]})" for n in proto.graph.node if n.op_type not in _OPS]


def onnx_module(proto):
    """A torch.nn.Module computing `proto` (static shapes, one input); ConversionError naming the
    first node it cannot run."""
    import onnx
    import torch

    missing = unsupported(proto)
    if missing:
        raise ConversionError(STEP, f"no torch equivalent for {', '.join(missing[:5])}"
                                    + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    proto = onnx.shape_inference.infer_shapes(proto)
    shapes = {}
    for vi in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)

    class OnnxModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            inits = {i.name for i in proto.graph.initializer}
            self.input_name = next(i.name for i in proto.graph.input if i.name not in inits)
            self.output_names = [o.name for o in proto.graph.output]
            self.consts: dict[str, torch.Tensor] = {}
            self.keys: dict[str, str] = {}
            for i, init in enumerate(proto.graph.initializer):
                self._const(init.name, torch.from_numpy(onnx.numpy_helper.to_array(init).copy()), f"w{i}")
            self.nodes = []
            for k, n in enumerate(proto.graph.node):
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                if n.op_type == "Shape" and n.input[0] in shapes:
                    self._const(n.output[0], _shape_slice(shapes[n.input[0]], attrs), f"c{k}")
                elif all(not x or x in self.keys for x in n.input) and n.op_type != "Dropout":
                    outs = _run(n, attrs, [self.consts_get(x) for x in n.input])
                    for j, (name, v) in enumerate(zip(n.output, outs)):
                        self._const(name, v, f"c{k}_{j}")
                else:
                    self.nodes.append((n, attrs))

        def _const(self, name: str, value: torch.Tensor, key: str) -> None:
            self.keys[name] = key
            if value.is_floating_point():
                self.register_buffer(key, value.contiguous())
            else:
                self.consts[key] = value

        def consts_get(self, name: str):
            if not name:
                return None
            key = self.keys[name]
            return self.consts[key] if key in self.consts else getattr(self, key)

        def forward(self, x):
            env = {self.input_name: x}
            for n, attrs in self.nodes:
                args = [None if not i else (env[i] if i in env else self.consts_get(i)) for i in n.input]
                for name, v in zip(n.output, _run(n, attrs, args)):
                    env[name] = v
            return {o: env[o] if o in env else self.consts_get(o) for o in self.output_names}

    return OnnxModule().eval()


def _shape_slice(shape: tuple[int, ...], attrs: dict):
    import torch
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return torch.tensor(shape[slice(start, end)], dtype=torch.int64)


def _run(n, attrs: dict, args: list) -> list:
    try:
        out = _OPS[n.op_type](attrs, *args)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(STEP, f"{n.op_type} failed: {type(exc).__name__}: {exc}",
                              node=n.name or n.output[0]) from exc
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if hasattr(t, "tolist") else t)]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _F():
    import torch.nn.functional as F
    return F


def _torch():
    import torch
    return torch


# --------------------------------------------------------------------------- element-wise

def _binary(fn_name: str):
    return lambda attrs, a, b: getattr(_torch(), fn_name)(a, b)


for _name, _fn in (("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Pow", "pow"), ("Equal", "eq"),
                   ("Less", "lt"), ("Greater", "gt"), ("LessOrEqual", "le"), ("GreaterOrEqual", "ge"),
                   ("And", "logical_and"), ("Or", "logical_or")):
    _OPS[_name] = _binary(_fn)


@_op("Div")
def _div(attrs, a, b):
    t = _torch()
    if not a.is_floating_point() and not b.is_floating_point():
        return t.div(a, b, rounding_mode="trunc")
    return a / b


def _unary(fn: Callable):
    return lambda attrs, x: fn(x)


for _name, _fn in (("Relu", lambda x: _torch().relu(x)), ("Sigmoid", lambda x: _torch().sigmoid(x)),
                   ("Tanh", lambda x: _torch().tanh(x)), ("Exp", lambda x: _torch().exp(x)),
                   ("Log", lambda x: _torch().log(x)), ("Sqrt", lambda x: _torch().sqrt(x)),
                   ("Abs", lambda x: _torch().abs(x)), ("Neg", lambda x: -x), ("Floor", lambda x: _torch().floor(x)),
                   ("Ceil", lambda x: _torch().ceil(x)), ("Erf", lambda x: _torch().erf(x)),
                   ("Reciprocal", lambda x: _torch().reciprocal(x)), ("Sin", lambda x: _torch().sin(x)),
                   ("Cos", lambda x: _torch().cos(x)), ("Softplus", lambda x: _F().softplus(x)),
                   ("Not", lambda x: _torch().logical_not(x)), ("Identity", lambda x: x),
                   ("HardSwish", lambda x: _F().hardswish(x)), ("Round", lambda x: _torch().round(x))):
    _OPS[_name] = _unary(_fn)


@_op("Dropout")
def _dropout(attrs, x, *rest):
    return x


@_op("LeakyRelu")
def _leaky(attrs, x):
    return _F().leaky_relu(x, attrs.get("alpha", 0.01))


@_op("Elu")
def _elu(attrs, x):
    return _F().elu(x, attrs.get("alpha", 1.0))


@_op("HardSigmoid")
def _hard_sigmoid(attrs, x):
    return _torch().clamp(x * attrs.get("alpha", 0.2) + attrs.get("beta", 0.5), 0.0, 1.0)


@_op("PRelu")
def _prelu(attrs, x, slope):
    return _torch().where(x >= 0, x, x * slope)


@_op("Clip")
def _clip(attrs, x, lo=None, hi=None):
    t = _torch()
    lo = attrs.get("min") if lo is None and "min" in attrs else lo
    hi = attrs.get("max") if hi is None and "max" in attrs else hi
    if lo is not None:
        x = t.maximum(x, lo if isinstance(lo, t.Tensor) else t.tensor(lo, dtype=x.dtype))
    if hi is not None:
        x = t.minimum(x, hi if isinstance(hi, t.Tensor) else t.tensor(hi, dtype=x.dtype))
    return x


def _fold(fn_name: str, mean: bool = False):
    def run(attrs, *xs):
        t = _torch()
        out = xs[0]
        for x in xs[1:]:
            out = getattr(t, fn_name)(out, x)
        return out / len(xs) if mean else out
    return run


_OPS.update({"Max": _fold("maximum"), "Min": _fold("minimum"), "Sum": _fold("add"), "Mean": _fold("add", True)})


@_op("Where")
def _where(attrs, c, a, b):
    return _torch().where(c, a, b)


_OPS["Softmax"] = lambda attrs, x: _torch().softmax(x, attrs.get("axis", -1))
_OPS["LogSoftmax"] = lambda attrs, x: _torch().log_softmax(x, attrs.get("axis", -1))

_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


@_op("Cast")
def _cast(attrs, x):
    to = attrs["to"]
    if to not in _DTYPES:
        raise ConversionError(STEP, f"Cast to ONNX type {to} is not supported")
    return x.to(getattr(_torch(), _DTYPES[to]))


# --------------------------------------------------------------------------- linear algebra, convolution, pooling

@_op("MatMul")
def _matmul(attrs, a, b):
    return _torch().matmul(a, b)


@_op("Gemm")
def _gemm(attrs, a, b, c=None):
    a = a.transpose(-1, -2) if attrs.get("transA", 0) else a
    b = b.transpose(-1, -2) if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * _torch().matmul(a, b)
    return y if c is None else y + attrs.get("beta", 1.0) * c


def _pads(attrs, rank: int) -> tuple[list[int], list[int]]:
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    if _s(attrs.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
        raise ConversionError(STEP, f"auto_pad {_s(attrs['auto_pad'])} is not supported (export with explicit pads)")
    return pads[:rank], pads[rank:]


def _padded(x, begin: list[int], end: list[int], value: float = 0.0):
    """x with the spatial pads applied when they are asymmetric; the symmetric remainder."""
    if begin == end:
        return x, begin
    flat = []
    for b, e in zip(reversed(begin), reversed(end)):
        flat += [b, e]
    return _F().pad(x, flat, value=value), [0] * len(begin)


@_op("Conv")
def _conv(attrs, x, w, b=None):
    rank = w.dim() - 2
    begin, end = _pads(attrs, rank)
    x, pad = _padded(x, begin, end)
    fn = {1: _F().conv1d, 2: _F().conv2d, 3: _F().conv3d}[rank]
    return fn(x, w, b, stride=attrs.get("strides", [1] * rank), padding=pad,
              dilation=attrs.get("dilations", [1] * rank), groups=attrs.get("group", 1))


@_op("ConvTranspose")
def _conv_transpose(attrs, x, w, b=None):
    rank = w.dim() - 2
    begin, end = _pads(attrs, rank)
    if begin != end or "output_shape" in attrs:
        raise ConversionError(STEP, "ConvTranspose with asymmetric pads or output_shape is not supported")
    fn = {1: _F().conv_transpose1d, 2: _F().conv_transpose2d}[rank]
    return fn(x, w, b, stride=attrs.get("strides", [1] * rank), padding=begin,
              output_padding=attrs.get("output_padding", [0] * rank), groups=attrs.get("group", 1),
              dilation=attrs.get("dilations", [1] * rank))


@_op("MaxPool")
def _max_pool(attrs, x):
    k = attrs["kernel_shape"]
    begin, end = _pads(attrs, len(k))
    x, pad = _padded(x, begin, end, value=float("-inf"))
    fn = {1: _F().max_pool1d, 2: _F().max_pool2d}[len(k)]
    return fn(x, k, attrs.get("strides", [1] * len(k)), pad, attrs.get("dilations", [1] * len(k)),
              ceil_mode=bool(attrs.get("ceil_mode", 0)))


@_op("AveragePool")
def _avg_pool(attrs, x):
    k = attrs["kernel_shape"]
    begin, end = _pads(attrs, len(k))
    if begin != end:
        raise ConversionError(STEP, "AveragePool with asymmetric pads is not supported")
    fn = {1: _F().avg_pool1d, 2: _F().avg_pool2d}[len(k)]
    return fn(x, k, attrs.get("strides", [1] * len(k)), begin, ceil_mode=bool(attrs.get("ceil_mode", 0)),
              count_include_pad=bool(attrs.get("count_include_pad", 0)))


@_op("GlobalAveragePool")
def _gap(attrs, x):
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@_op("GlobalMaxPool")
def _gmp(attrs, x):
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@_op("BatchNormalization")
def _batch_norm(attrs, x, scale, bias, mean, var):
    return _F().batch_norm(x, mean, var, scale, bias, False, 0.0, attrs.get("epsilon", 1e-5))


@_op("InstanceNormalization")
def _instance_norm(attrs, x, scale, bias):
    return _F().instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5))


@_op("LayerNormalization")
def _layer_norm(attrs, x, scale, bias=None):
    axis = attrs.get("axis", -1) % x.dim()
    return _F().layer_norm(x, x.shape[axis:], scale, bias, attrs.get("epsilon", 1e-5))


# --------------------------------------------------------------------------- shapes

@_op("Constant")
def _constant(attrs):
    import onnx
    t = _torch()
    if "value" in attrs:
        return t.from_numpy(onnx.numpy_helper.to_array(attrs["value"]).copy())
    for key, dtype in (("value_float", t.float32), ("value_int", t.int64)):
        if key in attrs:
            return t.tensor(attrs[key], dtype=dtype)
    for key, dtype in (("value_floats", t.float32), ("value_ints", t.int64)):
        if key in attrs:
            return t.tensor(list(attrs[key]), dtype=dtype)
    raise ConversionError(STEP, f"Constant with {sorted(attrs)} is not supported")


@_op("ConstantOfShape")
def _constant_of_shape(attrs, shape):
    import onnx
    t = _torch()
    value = t.from_numpy(onnx.numpy_helper.to_array(attrs["value"]).copy()) if "value" in attrs else t.zeros(1)
    return value.reshape(()).expand(*_ints(shape)).clone()


@_op("Reshape")
def _reshape(attrs, x, shape):
    dims = _ints(shape)
    if not attrs.get("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@_op("Flatten")
def _flatten(attrs, x):
    axis = attrs.get("axis", 1) % max(x.dim(), 1)
    lead = int(np.prod(x.shape[:axis])) if axis else 1
    return x.reshape(lead, -1)


@_op("Transpose")
def _transpose(attrs, x):
    return x.permute(*attrs.get("perm", list(range(x.dim() - 1, -1, -1))))


@_op("Squeeze")
def _squeeze(attrs, x, axes=None):
    axes = _ints(axes) if axes is not None else attrs.get("axes")
    if axes is None:
        return x.squeeze()
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


@_op("Unsqueeze")
def _unsqueeze(attrs, x, axes=None):
    axes = _ints(axes) if axes is not None else attrs["axes"]
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return x


@_op("Concat")
def _concat(attrs, *xs):
    return _torch().cat([x for x in xs if x is not None], dim=attrs["axis"])


@_op("Split")
def _split(attrs, x, split=None):
    axis = attrs.get("axis", 0)
    if split is not None:
        sizes = _ints(split)
    elif "split" in attrs:
        sizes = list(attrs["split"])
    else:
        n = attrs["num_outputs"]
        size = -(-x.shape[axis] // n)
        sizes = [min(size, x.shape[axis] - i * size) for i in range(n)]
    return list(_torch().split(x, sizes, dim=axis))


@_op("Slice")
def _slice(attrs, x, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    t = _torch()
    index: list[Any] = [slice(None)] * x.dim()
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= x.dim()
        size = x.shape[a]
        s, e = s + size if s < 0 else s, e + size if e < 0 else e
        if st > 0:
            index[a] = slice(max(0, min(size, s)), max(0, min(size, e)), st)
        else:      # ONNX clamps a negative step's start to [0, size−1] and its end to [−1, size−1]
            taken = list(range(max(0, min(size - 1, s)), max(-1, min(size - 1, e)), st))
            x = t.index_select(x, a, t.tensor(taken, dtype=t.int64))
    return x[tuple(index)]


@_op("Gather")
def _gather(attrs, x, idx):
    axis = attrs.get("axis", 0) % x.dim()
    t = _torch()
    idx = t.where(idx < 0, idx + x.shape[axis], idx) if not isinstance(idx, int) else idx
    if idx.dim() == 0:
        return t.index_select(x, axis, idx.reshape(1).long()).squeeze(axis)
    out = t.index_select(x, axis, idx.reshape(-1).long())
    return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])


@_op("Expand")
def _expand(attrs, x, shape):
    dims = _ints(shape)
    rank = max(len(dims), x.dim())
    dims = [1] * (rank - len(dims)) + dims
    xs = [1] * (rank - x.dim()) + list(x.shape)
    return x.reshape(xs).expand(*[max(a, b) for a, b in zip(xs, dims)])


@_op("Tile")
def _tile(attrs, x, repeats):
    return x.repeat(*_ints(repeats))


@_op("Range")
def _range(attrs, start, limit, delta):
    return _torch().arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


@_op("Pad")
def _pad(attrs, x, pads=None, value=None, axes=None):
    if axes is not None:
        raise ConversionError(STEP, "Pad with axes is not supported")
    p = _ints(pads) if pads is not None else list(attrs["pads"])
    rank = x.dim()
    flat = []
    for i in reversed(range(rank)):
        flat += [p[i], p[i + rank]]
    while len(flat) > 2 and flat[-1] == 0 and flat[-2] == 0:
        flat = flat[:-2]
    mode = _s(attrs.get("mode", "constant"))
    if mode == "constant":
        return _F().pad(x, flat, value=float(value) if value is not None else 0.0)
    return _F().pad(x, flat, mode={"reflect": "reflect", "edge": "replicate"}[mode])


def _reducer(kind: str):
    def run(attrs, x, axes=None):
        dims = _ints(axes) if axes is not None else attrs.get("axes")
        if dims is None or (axes is not None and not dims):
            if attrs.get("noop_with_empty_axes", 0):
                return x
            dims = list(range(x.dim()))
        keep = bool(attrs.get("keepdims", 1))
        dims = tuple(d % x.dim() for d in dims)
        if kind == "mean":
            return x.mean(dim=dims, keepdim=keep)
        if kind == "sum":
            return x.sum(dim=dims, keepdim=keep)
        return (x.amax if kind == "max" else x.amin)(dim=dims, keepdim=keep)
    return run


_OPS.update({"ReduceMean": _reducer("mean"), "ReduceSum": _reducer("sum"), "ReduceMax": _reducer("max"),
             "ReduceMin": _reducer("min")})


@_op("Resize")
def _resize(attrs, x, roi=None, scales=None, sizes=None):
    mode = _s(attrs.get("mode", "nearest"))
    ct = _s(attrs.get("coordinate_transformation_mode", "half_pixel"))
    if sizes is not None and sizes.numel():
        size = _ints(sizes)[2:]
    else:
        size = [int(np.floor(d * s)) for d, s in zip(x.shape[2:], scales.tolist()[2:])]
    if mode == "nearest":
        if ct not in ("asymmetric",) or _s(attrs.get("nearest_mode", "round_prefer_floor")) != "floor":
            raise ConversionError(STEP, f"Resize nearest with {ct}/{_s(attrs.get('nearest_mode', ''))} is not "
                                        "supported (asymmetric/floor is)")
        return _F().interpolate(x, size=size, mode="nearest")
    if mode == "linear" and ct in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return _F().interpolate(x, size=size, mode="bilinear" if x.dim() == 4 else "linear",
                                align_corners=ct == "align_corners")
    raise ConversionError(STEP, f"Resize {mode}/{ct} is not supported")


# --------------------------------------------------------------------------- spatial transformers

@_op("GridSample")
def _grid_sample(attrs, x, grid):
    mode = {"linear": "bilinear", "bilinear": "bilinear", "nearest": "nearest", "cubic": "bicubic",
            "bicubic": "bicubic"}[_s(attrs.get("mode", "bilinear"))]
    return _F().grid_sample(x, grid, mode=mode, padding_mode=_s(attrs.get("padding_mode", "zeros")),
                            align_corners=bool(attrs.get("align_corners", 0)))


@_op("AffineGrid")
def _affine_grid(attrs, theta, size):
    return _F().affine_grid(theta, _ints(size), align_corners=bool(attrs.get("align_corners", 0)))
