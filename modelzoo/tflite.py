"""The weight importers' view of a .tflite model: `runtime.tflite.Graph` with DEQUANTIZE ops
folded into float32 constants (fp16 weights), and the navigation the importers use. Every
problem reading the file is a `WeightImportError`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from runtime.tflite import Graph, Op, Tensor, TFLiteFormatError

from .errors import WeightImportError

__all__ = ["Op", "Tensor", "TFLiteGraph"]


class TFLiteGraph:
    """The first subgraph of a TFLite model, with DEQUANTIZE ops folded into constants."""

    def __init__(self, buf: bytes, source: str = "<bytes>"):
        self.source = source
        try:
            g = Graph.from_bytes(buf, source)
        except TFLiteFormatError as exc:
            raise WeightImportError(str(exc)) from exc
        self.tensors: list[Tensor] = list(g.tensors)
        self.ops: list[Op] = []
        for op in g.ops:
            if op.kind.startswith("CUSTOM:") and op.custom_options and not op.options:
                raise WeightImportError(f"{source}: op {op.index} ({op.kind}) has custom options that are not "
                                        f"a flexbuffer map")
            if op.kind != "DEQUANTIZE":
                self.ops.append(op)
                continue
            src = self.tensors[op.inputs[0]]
            if src.data is None:
                raise WeightImportError(f"{source}: DEQUANTIZE of non-constant tensor {src.name!r}")
            self.tensors[op.outputs[0]].data = src.data.astype(np.float32)
        self.inputs, self.outputs = g.inputs, g.outputs
        self.producer: dict[int, Op] = {t: op for op in self.ops for t in op.outputs}
        self.consumers: dict[int, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t >= 0:
                    self.consumers.setdefault(t, []).append(op)

    @classmethod
    def load(cls, path: Path | str) -> "TFLiteGraph":
        try:
            buf = Path(path).read_bytes()
        except OSError as exc:
            raise WeightImportError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        return cls(buf, str(path))

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
        return [op for op in ops if op_type is None or op.kind == op_type]

    def ops_of_type(self, op_type: str) -> list[Op]:
        return [op for op in self.ops if op.kind == op_type]

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
