"""Dense weights from a TFLite model that stores some constants sparse (TFLite's sparsity
encoding, read back by DENSIFY ops, as in MediaPipe's face_detection_full_range_sparse):
each sparse constant is expanded to its dense values and its DENSIFY op removed, so the graph
reads like a dense model. Bytes in, bytes out; the file is never changed."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import WeightImportError

DENSIFY = 124             # BuiltinOperator.DENSIFY
DENSE, SPARSE_CSR = 0, 1  # DimensionType


def _vector(v) -> np.ndarray:
    return np.asarray(v.values if v is not None and v.values is not None else [], np.int64)


def sparse_to_dense(shape: tuple[int, ...], sparsity, values: np.ndarray) -> np.ndarray:
    """The dense array of `shape` that TFLite's sparsity parameters and packed `values` encode
    (dimension metadata in traversal order, block dimensions after the tensor's own)."""
    rank, order = len(shape), [int(x) for x in sparsity.traversalOrder]
    block_map = [int(x) for x in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    dims = list(sparsity.dimMetadata)
    if len(order) != len(dims) or len(order) != rank + len(block_map):
        raise WeightImportError(f"sparsity of a {list(shape)} tensor: {len(order)} traversal dims, {len(dims)} metadata, "
                                f"{len(block_map)} blocks")
    block_size = {}
    for level, d in enumerate(order):
        if d >= rank:
            block_size[block_map[d - rank]] = int(dims[level].denseSize)
    out = np.zeros(shape, values.dtype)
    coords = [0] * len(order)

    def visit(level: int, pos: int) -> None:
        m = dims[level]
        if m.format == DENSE:
            entries = ((i, pos * int(m.denseSize) + i) for i in range(int(m.denseSize)))
        elif m.format == SPARSE_CSR:
            seg, idx = _vector(m.arraySegments), _vector(m.arrayIndices)
            entries = ((int(idx[j]), j) for j in range(int(seg[pos]), int(seg[pos + 1])))
        else:
            raise WeightImportError(f"unknown sparse dimension format {m.format}")
        for i, p in entries:
            coords[order[level]] = i
            if level + 1 < len(order):
                visit(level + 1, p)
            else:
                at = tuple(coords[d] * block_size.get(d, 1) + (coords[rank + block_map.index(d)] if d in block_size else 0)
                           for d in range(rank))
                out[at] = values[p]

    visit(0, 0)
    return out


def densify(buf: bytes, source: str = "<bytes>") -> bytes:
    """The model of `buf` with every sparse constant dense and its DENSIFY op gone; a file that
    is not a readable TFLite model raises WeightImportError."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    numpy_types = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
                   schema.TensorType.INT8: np.int8}
    if len(buf) < 8 or bytes(buf[4:8]) != b"TFL3":
        raise WeightImportError(f"{source}: not a TFLite model (the TFL3 identifier is missing)")
    try:
        model = fbu.read_model_from_bytearray(bytearray(buf))
    except (struct.error, ValueError, IndexError, TypeError) as exc:
        raise WeightImportError(f"{source}: not a readable TFLite model ({exc})") from None
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.sparsity is None:
                continue
            if t.type not in numpy_types:
                raise WeightImportError(f"{source}: sparse tensor {t.name!r} of unsupported type {t.type}")
            b = model.buffers[t.buffer]
            values = np.frombuffer(bytes(b.data), numpy_types[t.type])
            dense = sparse_to_dense(tuple(int(x) for x in t.shape), t.sparsity, values)
            b.data = np.frombuffer(dense.tobytes(), np.uint8)
            t.sparsity = None
        kept, alias = [], {}
        for op in sg.operators:
            if codes[op.opcodeIndex] == DENSIFY:
                alias[int(op.outputs[0])] = int(op.inputs[0])
            else:
                kept.append(op)
        for op in kept:
            op.inputs = np.asarray([alias.get(int(i), int(i)) for i in op.inputs], np.int32)
        sg.operators = kept
    return bytes(fbu.convert_object_to_bytearray(model))
