"""One model of a TFLite flatbuffer for every room that reads or edits one: the GPU check, the
TFLite passes, the weight importers, the profiler and the GPU localiser.

`Graph` holds the model object API of `ai_edge_litert.tools.flatbuffer_utils` (`ModelT`) and
gives views of its main subgraph: tensors (index, name, shape, dtype, constant data) and ops
(index, kind, version, inputs, outputs, options), producer/consumer maps, and the edits the
passes make (rewire an input, replace or drop ops, add constants and op codes, set the
signature). Buffers stored after the flatbuffer (offset/size) are read into the model, so
`to_bytes()` writes one self-contained flatbuffer.

Op kinds are builtin names ("CONV_2D") or "CUSTOM:<custom name>". Anything that is not a
readable TFLite model raises `TFLiteFormatError`, naming the source. The schema is imported
inside functions: importing this module loads neither TensorFlow nor ai_edge_litert."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import FileFormatError

IDENTIFIER = b"TFL3"
CUSTOM_PREFIX = "CUSTOM:"


class TFLiteFormatError(FileFormatError):
    """Bytes that are not a readable TFLite model (no TFL3 identifier, truncated, tampered)."""


# -- dtypes ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DType:
    code: int             # schema TensorType
    name: str             # lower-case schema name ("float32")
    numpy: Any            # numpy scalar type, or None where numpy has none (string, int4, …)


DTYPES: dict[int, DType] = {d.code: d for d in (
    DType(0, "float32", np.float32), DType(1, "float16", np.float16), DType(2, "int32", np.int32),
    DType(3, "uint8", np.uint8), DType(4, "int64", np.int64), DType(5, "string", None), DType(6, "bool", np.bool_),
    DType(7, "int16", np.int16), DType(8, "complex64", np.complex64), DType(9, "int8", np.int8),
    DType(10, "float64", np.float64), DType(11, "complex128", np.complex128), DType(12, "uint64", np.uint64),
    DType(13, "resource", None), DType(14, "variant", None), DType(15, "uint32", np.uint32),
    DType(16, "uint16", np.uint16), DType(17, "int4", None), DType(18, "bfloat16", None))}


def type_name(code: int) -> str:
    d = DTYPES.get(int(code))
    return d.name if d is not None else f"type{int(code)}"


def type_code(dtype: Any) -> int:
    """The TensorType code of a numpy dtype or a type name ("float32")."""
    for d in DTYPES.values():
        if (isinstance(dtype, str) and dtype == d.name) or \
                (not isinstance(dtype, str) and d.numpy is not None and np.dtype(dtype) == np.dtype(d.numpy)):
            return d.code
    raise ValueError(f"no TFLite tensor type for {dtype!r}")


# -- op names ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def builtin_names() -> dict[int, str]:
    """Builtin operator code → name, from the schema."""
    from ai_edge_litert import schema_py_generated as schema
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def builtin_code(kind: str) -> int:
    codes = {name: code for code, name in builtin_names().items()}
    if kind not in codes:
        raise ValueError(f"no builtin TFLite op {kind!r}")
    return codes[kind]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def opcode_kind(oc: Any) -> str:
    """The kind of an OperatorCodeT: builtin name or "CUSTOM:<name>"."""
    code = max(oc.builtinCode, oc.deprecatedBuiltinCode)  # codes > 127 live in builtinCode only
    if oc.customCode is not None or code == 32:            # BuiltinOperator.CUSTOM
        return CUSTOM_PREFIX + (_text(oc.customCode) if oc.customCode else "?")
    return builtin_names().get(code, f"BUILTIN_{code}")


# -- views -------------------------------------------------------------------------------------

@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type: int                      # TensorType code
    buffer: int
    const: bool                    # has constant bytes (even of a dtype numpy lacks)
    data: np.ndarray | None = field(compare=False)  # the constant, shaped; None for runtime tensors

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> Any:
        d = DTYPES.get(self.type)
        return None if d is None else d.numpy

    @property
    def type_name(self) -> str:
        return type_name(self.type)


@dataclass
class Op:
    index: int
    kind: str                      # builtin name or "CUSTOM:<name>"
    version: int
    inputs: tuple[int, ...]        # -1: an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)  # builtin options, or a custom op's flexbuffer map
    custom_options: bytes | None = None


def _ints(v: Any) -> tuple[int, ...]:
    return () if v is None else tuple(int(j) for j in v)


def _raw_bytes(data: Any) -> bytes:
    return data.tobytes() if isinstance(data, np.ndarray) else bytes(bytearray(data))


# -- the graph ---------------------------------------------------------------------------------

class Graph:
    """The main subgraph of a TFLite model, over its object API (`model`, `subgraph`)."""

    def __init__(self, model: Any, source: str = "<model>"):
        self.model, self.source = model, source
        if not model.subgraphs:
            raise TFLiteFormatError(f"{source}: not a readable TFLite model (no subgraph)")
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview, source: str = "<bytes>") -> "Graph":
        """Parse and check a flatbuffer; anything unreadable raises TFLiteFormatError naming `source`."""
        buf = bytes(buf)
        if len(buf) < 8 or buf[4:8] != IDENTIFIER:
            raise TFLiteFormatError(f"{source}: not a readable TFLite model (not a TFLite flatbuffer: "
                                    f"the TFL3 identifier is missing)")
        try:
            from ai_edge_litert import schema_py_generated as schema
            from ai_edge_litert.tools import flatbuffer_utils as fbu
            packed = schema.Model.GetRootAs(buf, 0)
            for i in range(packed.BuffersLength()):   # buffers after the flatbuffer must lie inside the file
                b = packed.Buffers(i)
                if b.Offset() > 1 and b.Offset() + b.Size() > len(buf):
                    raise ValueError(f"buffer {i} ends at byte {b.Offset() + b.Size()} of {len(buf)}")
            model = fbu.read_model_from_bytearray(bytearray(buf))
            for b in model.buffers or []:   # offset buffers come back as bytearrays: pack them as arrays
                if b.data is not None and not isinstance(b.data, np.ndarray):
                    b.data = np.frombuffer(bytes(b.data), np.uint8)
            g = cls(model, source)
            g.check()
        except TFLiteFormatError:
            raise
        except Exception as exc:  # a truncated or tampered flatbuffer fails in many ways
            raise TFLiteFormatError(f"{source}: not a readable TFLite model ({type(exc).__name__}: {exc})") from exc
        return g

    @classmethod
    def load(cls, path: Path | str) -> "Graph":
        path = Path(path)
        try:
            buf = path.read_bytes()
        except OSError as exc:
            raise TFLiteFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        return cls.from_bytes(buf, str(path))

    def to_bytes(self) -> bytes:
        from ai_edge_litert.tools import flatbuffer_utils as fbu
        return bytes(fbu.convert_object_to_bytearray(self.model))

    def check(self) -> None:
        """Indices in range and constants the size of their shape; TFLiteFormatError where not."""
        sg, nb, nt = self.subgraph, len(self.model.buffers or []), len(self.subgraph.tensors or [])
        bad = [f"tensor {i} names buffer {t.buffer} of {nb}" for i, t in enumerate(sg.tensors or []) if t.buffer >= nb]
        for i, op in enumerate(sg.operators or []):
            if not 0 <= op.opcodeIndex < len(self.model.operatorCodes or []):
                bad.append(f"op {i} has op code {op.opcodeIndex}")
            if any(not -1 <= t < nt for t in _ints(op.inputs)) or any(not 0 <= t < nt for t in _ints(op.outputs)):
                bad.append(f"op {i} names a tensor outside 0..{nt - 1}")
        if any(not 0 <= t < nt for t in _ints(sg.inputs) + _ints(sg.outputs)):
            bad.append("a graph input or output is outside the tensors")
        if bad:
            raise TFLiteFormatError(f"{self.source}: not a readable TFLite model ({'; '.join(bad[:3])})")
        self.tensors  # noqa: B018  (builds every view: constants must match their shapes)

    # -- views ---------------------------------------------------------------------------------
    @property
    def subgraph(self) -> Any:
        return self.model.subgraphs[0]

    def _cached(self, key: str, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def changed(self, tensors: bool = True) -> None:
        """Forget the views (the tensor views too unless `tensors` is False); every edit calls
        this, and so must code that edits `model` directly."""
        for key in ("kinds", "ops", "producers", "consumers") + (("tensors", "names") if tensors else ()):
            self._cache.pop(key, None)

    @property
    def kinds(self) -> list[str]:
        """Kind of each operator code."""
        return self._cached("kinds", lambda: [opcode_kind(oc) for oc in self.model.operatorCodes or []])

    @property
    def tensors(self) -> list[Tensor]:
        return self._cached("tensors", lambda: [self._tensor(i, t) for i, t in enumerate(self.subgraph.tensors or [])])

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def find(self, name: str) -> Tensor | None:
        index = self._cached("names", lambda: {t.name: t for t in reversed(self.tensors)})
        return index.get(name)

    @property
    def ops(self) -> list[Op]:
        return self._cached("ops", lambda: [self._op(i, op) for i, op in enumerate(self.subgraph.operators or [])])

    @property
    def inputs(self) -> tuple[int, ...]:
        return _ints(self.subgraph.inputs)

    @property
    def outputs(self) -> tuple[int, ...]:
        return _ints(self.subgraph.outputs)

    def _index(self, side: str) -> dict[int, list[Op]]:
        out: dict[int, list[Op]] = {}
        for op in self.ops:
            for t in getattr(op, side):
                if t >= 0:
                    out.setdefault(t, []).append(op)
        return out

    def producers(self) -> dict[int, list[Op]]:
        """Tensor → the ops writing it (one in a well-formed graph)."""
        return self._cached("producers", lambda: self._index("outputs"))

    def consumers(self) -> dict[int, list[Op]]:
        """Tensor → the ops reading it, one entry per input slot."""
        return self._cached("consumers", lambda: self._index("inputs"))

    def producer(self, tensor: int) -> Op | None:
        ops = self.producers().get(int(tensor))
        return ops[0] if ops else None

    def made_by(self, tensor: int, kind: str) -> Op | None:
        """The op of `kind` that produces `tensor`, or None."""
        op = self.producer(tensor)
        return op if op is not None and op.kind == kind else None

    def const(self, tensor: int) -> np.ndarray | None:
        return None if tensor < 0 else self.tensors[tensor].data

    def histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return dict(sorted(counts.items()))

    def signatures(self) -> dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]]]]:
        """Signature key → ((name, tensor) inputs, (name, tensor) outputs), in stored order."""
        return {_text(s.signatureKey): ([(_text(m.name), int(m.tensorIndex)) for m in s.inputs or []],
                                        [(_text(m.name), int(m.tensorIndex)) for m in s.outputs or []])
                for s in self.model.signatureDefs or []}

    def _tensor(self, i: int, t: Any) -> Tensor:
        raw = None
        if 0 < t.buffer < len(self.model.buffers or []):
            data = self.model.buffers[t.buffer].data
            if data is not None and len(data):
                raw = _raw_bytes(data)
        shape = _ints(t.shape)
        name = _text(t.name) if t.name is not None else ""
        value = None
        dtype = DTYPES.get(int(t.type))
        if raw is not None and dtype is not None and dtype.numpy is not None:
            need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype.numpy).itemsize
            if len(raw) != need:
                raise TFLiteFormatError(f"{self.source}: not a readable TFLite model (tensor {i} {name!r} has "
                                        f"{len(raw)} bytes, {list(shape)} {dtype.name} needs {need})")
            value = np.frombuffer(raw, dtype=dtype.numpy).reshape(shape)
        return Tensor(i, name, shape, int(t.type), int(t.buffer), raw is not None, value)

    def _op(self, i: int, op: Any) -> Op:
        oc = self.model.operatorCodes[op.opcodeIndex]
        kind = self.kinds[op.opcodeIndex]
        custom = None if op.customOptions is None or not len(op.customOptions) else _raw_bytes(op.customOptions)
        opts: dict[str, Any] = {}
        if op.builtinOptions is not None:
            opts = dict(vars(op.builtinOptions))
        elif custom is not None:
            try:
                from flatbuffers import flexbuffers
                decoded = flexbuffers.Loads(custom)
                opts = decoded if isinstance(decoded, dict) else {}
            except Exception:  # opaque custom options: kept as bytes only
                opts = {}
        return Op(i, kind, int(oc.version or 1), _ints(op.inputs), _ints(op.outputs), opts, custom)

    # -- edits ---------------------------------------------------------------------------------
    def opcode(self, kind: str) -> int:
        """Index of the builtin op code `kind`, added when the model has none."""
        from ai_edge_litert import schema_py_generated as schema
        for i, k in enumerate(self.kinds):
            if k == kind:
                return i
        code = builtin_code(kind)
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        self.model.operatorCodes.append(oc)
        self.changed(tensors=False)
        return len(self.model.operatorCodes) - 1

    def add_const(self, value: np.ndarray, name: str) -> int:
        """Append a constant tensor (with its own buffer); its index."""
        from ai_edge_litert import schema_py_generated as schema
        value = np.ascontiguousarray(value)
        buf = schema.BufferT()
        buf.data = np.frombuffer(value.tobytes(), dtype=np.uint8)
        self.model.buffers.append(buf)
        t = schema.TensorT()
        t.shape, t.type = list(value.shape), type_code(value.dtype)
        t.buffer, t.name = len(self.model.buffers) - 1, name.encode()
        self.subgraph.tensors.append(t)
        self.changed()
        return len(self.subgraph.tensors) - 1

    def dequantized(self, tensor: int) -> np.ndarray | None:
        """A quantized constant as float32, (q − zero_point)·scale per its quantized dimension;
        None for a runtime or unquantized tensor."""
        value, q = self.const(tensor), self.subgraph.tensors[tensor].quantization
        if value is None or q is None or q.scale is None or not len(q.scale):
            return None
        axis = int(q.quantizedDimension or 0)

        def along_axis(v) -> np.ndarray:    # one value per slice of the quantized dimension, or one for all
            v = np.asarray(v if v is not None and len(v) else [0], np.float32)
            return v.reshape([v.size if d == axis else 1 for d in range(value.ndim)]) if v.size > 1 else v.reshape(())
        return ((value.astype(np.float32) - along_axis(q.zeroPoint)) * along_axis(q.scale)).astype(np.float32)

    def set_const(self, tensor: int, value: np.ndarray) -> None:
        """Make `tensor` the unquantized constant `value` (its dtype and shape); a buffer other
        tensors share is left to them and `tensor` gets its own."""
        from ai_edge_litert import schema_py_generated as schema
        value = np.ascontiguousarray(value)
        t = self.subgraph.tensors[tensor]
        shared = t.buffer <= 0 or any(o.buffer == t.buffer for i, o in enumerate(self.subgraph.tensors) if i != tensor)
        if shared:
            self.model.buffers.append(schema.BufferT())
            t.buffer = len(self.model.buffers) - 1
        buf = self.model.buffers[t.buffer]
        buf.data, buf.offset, buf.size = np.frombuffer(value.tobytes(), dtype=np.uint8), 0, 0
        t.shape, t.type, t.quantization = list(value.shape), type_code(value.dtype), None
        self.changed()

    def set_version(self, kind: str, version: int) -> None:
        """Set the version of every op code of `kind` (an op code is shared by the ops of its kind)."""
        for oc, k in zip(self.model.operatorCodes, self.kinds):
            if k == kind:
                oc.version = int(version)
        self.changed(tensors=False)

    def new_op(self, kind: str, inputs: Sequence[int], outputs: Sequence[int], options: str | None = None) -> Any:
        """An OperatorT of builtin `kind` (not yet in the graph); `options` names its schema
        options table ("AddOptions"), left at the schema defaults."""
        from ai_edge_litert import schema_py_generated as schema
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode(kind)
        op.inputs, op.outputs = [int(t) for t in inputs], [int(t) for t in outputs]
        if options is not None:
            op.builtinOptionsType = getattr(schema.BuiltinOptions, options)
            op.builtinOptions = getattr(schema, options + "T")()
        return op

    def replace_op(self, index: int, kind: str, inputs: Sequence[int] | None = None,
                   outputs: Sequence[int] | None = None, options: str | None = None) -> None:
        """Put a new op of `kind` at `index` (inputs/outputs default to the old op's)."""
        old = self.ops[index]
        new = self.new_op(kind, old.inputs if inputs is None else inputs, old.outputs if outputs is None else outputs,
                          options)
        self.subgraph.operators[index] = new
        self.changed(tensors=False)

    def set_input(self, op_index: int, slot: int, tensor: int) -> None:
        op = self.subgraph.operators[op_index]
        ins = list(_ints(op.inputs))
        ins[slot] = int(tensor)
        op.inputs = ins
        self.changed(tensors=False)

    def remove_ops(self, indices: Iterable[int], rewire: dict[int, int] | None = None) -> None:
        """Drop the ops `indices`; inputs named in `rewire` (tensor → tensor) read its value instead."""
        gone, rewire = set(indices), rewire or {}
        sg = self.subgraph
        sg.operators = [op for i, op in enumerate(sg.operators) if i not in gone]
        for op in sg.operators:
            op.inputs = [rewire.get(t, t) for t in _ints(op.inputs)]
        self.changed(tensors=False)

    def drop_dead_ops(self) -> int:
        """Remove ops none of whose outputs is read or is a graph output; how many."""
        keep_outputs, sg, before = set(self.outputs), self.subgraph, len(self.subgraph.operators)
        while True:
            used = {t for op in sg.operators for t in _ints(op.inputs) if t >= 0} | keep_outputs
            alive = [op for op in sg.operators if any(t in used for t in _ints(op.outputs))]
            if len(alive) == len(sg.operators):
                break
            sg.operators = alive
        self.changed(tensors=False)
        return before - len(sg.operators)

    def rename(self, tensor: int, name: str) -> None:
        self.subgraph.tensors[tensor].name = name.encode()
        self.changed()

    def set_signature(self, key: str, inputs: Sequence[tuple[str, int]], outputs: Sequence[tuple[str, int]]) -> None:
        """Make `key` the model's only signature: (name, tensor) pairs of subgraph 0, in order."""
        from ai_edge_litert import schema_py_generated as schema

        sig = schema.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = key.encode(), 0
        sig.inputs, sig.outputs = ([schema.TensorMapT(name=n.encode(), tensorIndex=int(t)) for n, t in side]
                                   for side in (inputs, outputs))
        self.model.signatureDefs = [sig]
        self.changed(tensors=False)

    def submodel(self, ops: Sequence[int], inputs: Sequence[int], outputs: Sequence[int],
                 only_used_buffers: bool = False) -> bytes:
        """The bytes of a model with only the ops `ops` (in graph order), the given graph
        inputs/outputs and no signatures; `only_used_buffers` empties every buffer those ops do
        not read (small one-op models). This graph is left as it was."""
        from ai_edge_litert import schema_py_generated as schema
        model, sg = self.model, self.subgraph
        saved = (model.buffers, sg.operators, sg.inputs, sg.outputs, model.signatureDefs)
        try:
            sg.operators = [saved[1][i] for i in sorted(ops)]
            if only_used_buffers:
                used = {int(m.buffer) for m in model.metadata or []} | {0}
                used |= {int(sg.tensors[t].buffer) for op in sg.operators
                         for t in _ints(op.inputs) + _ints(op.outputs) if t >= 0}
                empty = schema.BufferT()
                model.buffers = [b if j in used else empty for j, b in enumerate(saved[0])]
            sg.inputs, sg.outputs = [int(t) for t in inputs], [int(t) for t in outputs]
            model.signatureDefs = []
            return self.to_bytes()
        finally:
            model.buffers, sg.operators, sg.inputs, sg.outputs, model.signatureDefs = saved
