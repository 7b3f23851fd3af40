"""A small read-only view of a .tflite flatbuffer for weight import: ops in order, tensors with
their constant data (fp16 weights resolved through DEQUANTIZE), options and graph connectivity.

Uses the TFLite schema module shipped with ai_edge_litert (flatbuffers only, no runtime)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import WeightImportError

_NP_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8, 7: np.int16}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: Any
    data: np.ndarray | None  # constant data (dequantized to float32 where it was fp16), else None


@dataclass
class Op:
    index: int
    type: str                      # builtin name (e.g. "CONV_2D") or "CUSTOM:<name>"
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


class TFLiteGraph:
    """The first subgraph of a TFLite model, with DEQUANTIZE ops folded into constants."""

    def __init__(self, buf: bytes, source: str = "<bytes>"):
        self.source = source
        try:
            from ai_edge_litert import schema_py_generated as schema
            from flatbuffers import flexbuffers
            if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(buf, 0):
                raise ValueError("missing TFL3 identifier")
            model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
            g = model.subgraphs[0]
            names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
            self.tensors: list[Tensor] = []
            for i, t in enumerate(g.tensors):
                dtype = _NP_TYPES.get(t.type)
                raw = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
                data = None
                if raw is not None and len(raw) and dtype is not None:
                    data = np.frombuffer(bytes(raw), dtype=dtype).reshape(tuple(t.shape))
                shape = tuple(int(s) for s in t.shape) if t.shape is not None else ()
                self.tensors.append(Tensor(i, t.name.decode(), shape, dtype, data))
            self.ops: list[Op] = []
            for i, op in enumerate(g.operators):
                oc = model.operatorCodes[op.opcodeIndex]
                code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
                if oc.customCode:
                    kind = "CUSTOM:" + oc.customCode.decode()
                    opts = flexbuffers.Loads(bytes(op.customOptions)) if op.customOptions is not None else {}
                else:
                    kind = names.get(code, f"BUILTIN_{code}")
                    opts = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
                self.ops.append(Op(i, kind, tuple(int(j) for j in op.inputs), tuple(int(j) for j in op.outputs), opts))
            self.inputs = tuple(int(j) for j in g.inputs)
            self.outputs = tuple(int(j) for j in g.outputs)
        except WeightImportError:
            raise
        except Exception as exc:  # a tampered or truncated flatbuffer fails in many ways
            raise WeightImportError(f"{source}: not a readable TFLite model ({type(exc).__name__}: {exc})") from exc
        self._fold_dequantize()
        self.producer: dict[int, Op] = {}
        self.consumers: dict[int, list[Op]] = {}
        for op in self.ops:
            for t in op.outputs:
                self.producer[t] = op
            for t in op.inputs:
                if t >= 0:
                    self.consumers.setdefault(t, []).append(op)

    @classmethod
    def load(cls, path: Path | str) -> "TFLiteGraph":
        return cls(Path(path).read_bytes(), str(path))

    def _fold_dequantize(self) -> None:
        kept = []
        for op in self.ops:
            if op.type == "DEQUANTIZE":
                src = self.tensors[op.inputs[0]]
                if src.data is None:
                    raise WeightImportError(f"{self.source}: DEQUANTIZE of non-constant tensor {src.name!r}")
                self.tensors[op.outputs[0]].data = src.data.astype(np.float32)
            else:
                kept.append(op)
        self.ops = kept

    # -- navigation ------------------------------------------------------------------------
    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    def by_name(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise WeightImportError(f"{self.source}: no tensor named {name!r}")

    def const(self, index: int) -> np.ndarray:
        t = self.tensors[index]
        if t.data is None:
            raise WeightImportError(f"{self.source}: tensor {t.name!r} is not a constant")
        return t.data

    def consumers_of(self, tensor: int, op_type: str | None = None) -> list[Op]:
        ops = self.consumers.get(tensor, [])
        return [op for op in ops if op_type is None or op.type == op_type]

    def ops_of_type(self, op_type: str) -> list[Op]:
        return [op for op in self.ops if op.type == op_type]

    def reachable(self, start: int, target: int) -> bool:
        """Whether tensor `target` depends on tensor `start`."""
        seen, todo = set(), [start]
        while todo:
            t = todo.pop()
            if t == target:
                return True
            if t in seen:
                continue
            seen.add(t)
            for op in self.consumers.get(t, []):
                todo.extend(op.outputs)
        return False

    def only(self, ops: Iterable[Op], what: str) -> Op:
        ops = list(ops)
        if len(ops) != 1:
            raise WeightImportError(f"{self.source}: expected exactly one {what}, found {len(ops)}")
        return ops[0]
