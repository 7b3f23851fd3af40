"""Op-level timing of TFLite models without a profiler API.

ai_edge_litert's Interpreter exposes no op profiler, so two methods built on cutting models
with `ai_edge_litert.tools.flatbuffer_utils` (the model object API) are used:

- `cut_model(buf, inputs, outputs)`: a copy of the model whose subgraph inputs/outputs are the
  named tensors, keeping only the ops needed for those outputs. Timing cuts (e.g. a backbone, or
  the sampler between its boundary tensors) on the same interpreter gives segment costs.
- `op_profile(buf, feed)`: every op cut into its own one-op model, fed the values that op sees
  in a full run (`experimental_preserve_all_tensors`), and timed with perf_counter around
  `invoke()`. The per-invoke overhead of the Python binding is measured on the cheapest op and
  reported, so shares can be given raw (conservative for groups of many small ops) and with the
  overhead removed."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from validation.runners import RunnerError


class CutError(RunnerError):
    """A TFLite model cannot be cut as asked (unknown tensor, missing input for an op, …)."""


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    return schema, fbu


def read_model(buf: bytes):
    _, fbu = _schema()
    return fbu.read_model_from_bytearray(bytearray(buf))


def write_model(model) -> bytes:
    _, fbu = _schema()
    return bytes(fbu.convert_object_to_bytearray(model))


def op_kinds(model) -> list[str]:
    """Name of each operator code (custom ops by their custom name)."""
    schema, _ = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for oc in model.operatorCodes:
        if oc.customCode:
            out.append(oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode))
        else:
            out.append(names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), str(oc.builtinCode)))
    return out


def tensor_name(sg, t: int) -> str:
    n = sg.tensors[t].name
    return n.decode() if isinstance(n, bytes) else str(n)


def _is_const(model, sg, t: int) -> bool:
    data = model.buffers[sg.tensors[t].buffer].data
    return data is not None and len(data) > 0


def _resolve(sg, names: Iterable[str | int]) -> list[int]:
    index = {tensor_name(sg, i): i for i in range(len(sg.tensors))}
    out = []
    for n in names:
        if isinstance(n, (int, np.integer)):
            out.append(int(n))
        elif n in index:
            out.append(index[n])
        else:
            close = [k for k in index if n.lower() in k.lower()][:5]
            raise CutError(f"no tensor named {n!r} in the model" + (f" (similar: {close})" if close else ""))
    return out


def needed_ops(model, outputs: Sequence[int], inputs: Sequence[int], sg_index: int = 0) -> list[int]:
    """Indices (in graph order) of the ops that compute `outputs` from `inputs` and constants."""
    sg = model.subgraphs[sg_index]
    producer = {int(t): i for i, op in enumerate(sg.operators) for t in op.outputs}
    stop = set(int(t) for t in inputs)
    keep: set[int] = set()
    todo = [int(t) for t in outputs]
    seen: set[int] = set()
    while todo:
        t = todo.pop()
        if t in seen or t < 0:
            continue
        seen.add(t)
        if t in stop or _is_const(model, sg, t):
            continue
        if t not in producer:
            raise CutError(f"tensor {tensor_name(sg, t)!r} is needed but is neither produced by an op, a constant, "
                           f"nor one of the cut's inputs")
        i = producer[t]
        if i not in keep:
            keep.add(i)
            todo.extend(int(x) for x in sg.operators[i].inputs)
    return sorted(keep)


def cut_model(buf: bytes, inputs: Sequence[str | int], outputs: Sequence[str | int]) -> bytes:
    """A copy of a single-subgraph model computing `outputs` from `inputs` (tensor names or
    indices), with every op not needed for them dropped and its signatures removed."""
    model = read_model(buf)
    if len(model.subgraphs) != 1:
        raise CutError(f"only single-subgraph models can be cut (this one has {len(model.subgraphs)})")
    sg = model.subgraphs[0]
    ins, outs = _resolve(sg, inputs), _resolve(sg, outputs)
    keep = needed_ops(model, outs, ins)
    sg.operators = [sg.operators[i] for i in keep]
    sg.inputs = np.array(ins, dtype=np.int32)
    sg.outputs = np.array(outs, dtype=np.int32)
    model.signatureDefs = []
    return write_model(model)


def interpreter(buf: bytes, threads: int = 1, reference: bool = False, preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    it = Interpreter(model_content=bytes(buf), num_threads=threads, experimental_op_resolver_type=kind,
                     experimental_preserve_all_tensors=preserve)
    it.allocate_tensors()
    return it


def time_interpreter(it, feed: dict[str, np.ndarray] | Sequence[np.ndarray], runs: int, warmup: int) -> list[float]:
    """Set the inputs once, then time `runs` invoke() calls (ms) after `warmup` untimed ones."""
    details = it.get_input_details()
    values = list(feed.values()) if isinstance(feed, dict) else list(feed)
    if isinstance(feed, dict):
        values = [feed[d["name"]] if d["name"] in feed else values[i] for i, d in enumerate(details)]
    for d, v in zip(details, values):
        it.set_tensor(d["index"], np.asarray(v, dtype=d["dtype"]).reshape(d["shape"]))
    for _ in range(warmup):
        it.invoke()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def all_tensors(buf: bytes, feed: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
    """Every tensor's value in one run of the model (index → array)."""
    it = interpreter(buf, preserve=True)
    for d, v in zip(it.get_input_details(), feed):
        it.set_tensor(d["index"], np.asarray(v, dtype=d["dtype"]).reshape(d["shape"]))
    it.invoke()
    out = {}
    for d in it.get_tensor_details():
        try:
            out[d["index"]] = it.get_tensor(d["index"])
        except ValueError:
            pass
    return out


@dataclass
class OpTime:
    index: int
    kind: str
    output: str
    shape: tuple[int, ...]
    median_ms: float


@dataclass
class OpProfile:
    ops: list[OpTime]
    overhead_ms: float            # per-invoke cost of the binding (cheapest one-op model)
    threads: int
    reference: bool
    notes: list[str] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return sum(o.median_ms for o in self.ops)

    def share(self, indices: Iterable[int], corrected: bool = False) -> float:
        """Fraction of the summed op time spent in the ops `indices`."""
        idx = set(indices)
        f = (lambda o: max(o.median_ms - self.overhead_ms, 0.0)) if corrected else (lambda o: o.median_ms)
        total = sum(f(o) for o in self.ops)
        return sum(f(o) for o in self.ops if o.index in idx) / total if total else 0.0

    def by_kind(self, indices: Iterable[int] | None = None) -> list[tuple[str, int, float]]:
        idx = None if indices is None else set(indices)
        acc: dict[str, list[float]] = {}
        for o in self.ops:
            if idx is None or o.index in idx:
                acc.setdefault(o.kind, []).append(o.median_ms)
        return sorted(((k, len(v), sum(v)) for k, v in acc.items()), key=lambda r: -r[2])


def op_profile(buf: bytes, feed: Sequence[np.ndarray], threads: int = 1, runs: int = 30, warmup: int = 5,
               reference: bool = False) -> OpProfile:
    """Time every op of a single-subgraph model on its own (see the module docstring)."""
    model = read_model(buf)
    sg = model.subgraphs[0]
    kinds = op_kinds(model)
    values = all_tensors(buf, feed)
    ops, notes = [], []
    schema, _ = _schema()
    empty = schema.BufferT()
    all_ops, all_buffers = list(sg.operators), list(model.buffers)
    keep_buffers = {int(m.buffer) for m in (model.metadata or [])} | {0}
    try:
        for i, op in enumerate(all_ops):
            ins = [int(t) for t in op.inputs if int(t) >= 0 and not _is_const(model, sg, int(t))]
            ins = list(dict.fromkeys(ins))
            outs = [int(t) for t in op.outputs]
            used = keep_buffers | {int(sg.tensors[int(t)].buffer) for t in list(op.inputs) + outs if int(t) >= 0}
            # Only this op's buffers keep their bytes, so each one-op model serialises small.
            model.buffers = [b if j in used else empty for j, b in enumerate(all_buffers)]
            sg.operators = [op]
            sg.inputs = np.array(ins, dtype=np.int32)
            sg.outputs = np.array(outs, dtype=np.int32)
            model.signatureDefs = []
            try:
                it = interpreter(write_model(model), threads, reference)
                t = time_interpreter(it, [values[j] for j in ins], runs, warmup)
            except Exception as exc:  # an op that cannot stand alone is reported, not guessed
                notes.append(f"op {i} {kinds[op.opcodeIndex]}: not timed alone ({type(exc).__name__}: {exc})")
                continue
            ops.append(OpTime(i, kinds[op.opcodeIndex], tensor_name(sg, outs[0]),
                              tuple(int(d) for d in sg.tensors[outs[0]].shape), float(np.median(t))))
    finally:
        model.buffers, sg.operators = all_buffers, all_ops
    overhead = min(o.median_ms for o in ops) if ops else 0.0
    return OpProfile(ops, overhead, threads, reference, notes)


def histogram(buf: bytes) -> Counter:
    model = read_model(buf)
    kinds = op_kinds(model)
    return Counter(kinds[op.opcodeIndex] for op in model.subgraphs[0].operators)
