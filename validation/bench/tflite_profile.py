"""Op-level timing of TFLite models without a profiler API.

ai_edge_litert's Interpreter exposes no op profiler, so two methods built on cutting models
with `runtime.tflite.Graph` (its `submodel`) are used:

- `cut_model(buf, inputs, outputs)`: a copy of the model whose subgraph inputs/outputs are the
  named tensors, keeping only the ops needed for those outputs. Timing cuts (e.g. a backbone, or
  the sampler between its boundary tensors) on the same interpreter gives segment costs.
- `op_profile(buf, feed)`: every op cut into its own one-op model, fed the values that op sees
  in a full run (`experimental_preserve_all_tensors`), and timed with perf_counter around
  `invoke()`. The per-invoke overhead of the Python binding is measured on the cheapest op and
  reported, so shares can be given raw (conservative for groups of many small ops) and with the
  overhead removed."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from runtime.runners import RunnerError, get_runner
from runtime.tflite import Graph


class CutError(RunnerError):
    """A TFLite model cannot be cut as asked (unknown tensor, missing input for an op, …)."""


def _graph(buf: bytes) -> Graph:
    return Graph.from_bytes(buf, "model to profile")


def _resolve(g: Graph, names: Iterable[str | int]) -> list[int]:
    out = []
    for n in names:
        if isinstance(n, (int, np.integer)):
            out.append(int(n))
        elif g.find(n) is not None:
            out.append(g.find(n).index)
        else:
            close = [t.name for t in g.tensors if n.lower() in t.name.lower()][:5]
            raise CutError(f"no tensor named {n!r} in the model" + (f" (similar: {close})" if close else ""))
    return out


def needed_ops(g: Graph, outputs: Sequence[int], inputs: Sequence[int]) -> list[int]:
    """Indices (in graph order) of the ops that compute `outputs` from `inputs` and constants."""
    stop = set(int(t) for t in inputs)
    keep: set[int] = set()
    todo = [int(t) for t in outputs]
    seen: set[int] = set()
    while todo:
        t = todo.pop()
        if t in seen or t < 0:
            continue
        seen.add(t)
        if t in stop or g.tensor(t).const:
            continue
        op = g.producer(t)
        if op is None:
            raise CutError(f"tensor {g.tensor(t).name!r} is needed but is neither produced by an op, a constant, "
                           f"nor one of the cut's inputs")
        if op.index not in keep:
            keep.add(op.index)
            todo.extend(op.inputs)
    return sorted(keep)


def cut_model(buf: bytes, inputs: Sequence[str | int], outputs: Sequence[str | int]) -> bytes:
    """A copy of a single-subgraph model computing `outputs` from `inputs` (tensor names or
    indices), with every op not needed for them dropped and its signatures removed."""
    g = _graph(buf)
    if len(g.model.subgraphs) != 1:
        raise CutError(f"only single-subgraph models can be cut (this one has {len(g.model.subgraphs)})")
    ins, outs = _resolve(g, inputs), _resolve(g, outputs)
    return g.submodel(needed_ops(g, outs, ins), ins, outs)


def open_model(buf: bytes, threads: int = 1, reference: bool = False, preserve: bool = False):
    """A loaded TFLite runner (no spec: the model's own I/O) on XNNPACK or the reference kernels."""
    return get_runner("tflite-ref" if reference else "tflite")(None, bytes(buf), threads=threads,
                                                                 preserve_all_tensors=preserve).load()


def native_feed(runner, values: dict[str, np.ndarray] | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds by input name in the model's shapes and dtypes; positional values in input order."""
    details = runner.input_details()
    if isinstance(values, dict):
        values = [values[n] if n in values else list(values.values())[i] for i, n in enumerate(details)]
    return {n: np.asarray(v, dtype=dt).reshape(shape) for (n, (shape, dt)), v in zip(details.items(), values)}


def time_model(runner, feed: dict[str, np.ndarray] | Sequence[np.ndarray], runs: int, warmup: int) -> list[float]:
    """Set the inputs once, then time `runs` invocations (ms) after `warmup` untimed ones."""
    return runner.time_invoke(native_feed(runner, feed), runs, warmup)


def all_tensors(buf: bytes, feed: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
    """Every tensor's value in one run of the model (index → array)."""
    with open_model(buf, preserve=True) as r:
        r.run_native(native_feed(r, feed))
        return {i: v for i, _, v in r.tensors()}


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
    g = _graph(buf)
    values = all_tensors(buf, feed)
    ops, notes = [], []
    for op in g.ops:
        ins = list(dict.fromkeys(t for t in op.inputs if t >= 0 and not g.tensor(t).const))
        try:   # only this op's buffers keep their bytes, so each one-op model serialises small
            with open_model(g.submodel([op.index], ins, op.outputs, only_used_buffers=True), threads,
                            reference) as r:
                t = time_model(r, [values[j] for j in ins], runs, warmup)
        except Exception as exc:  # an op that cannot stand alone is reported, not guessed
            notes.append(f"op {op.index} {op.kind}: not timed alone ({type(exc).__name__}: {exc})")
            continue
        out = g.tensor(op.outputs[0])
        ops.append(OpTime(op.index, op.kind, out.name, out.shape, float(np.median(t))))
    overhead = min(o.median_ms for o in ops) if ops else 0.0
    return OpProfile(ops, overhead, threads, reference, notes)


def histogram(buf: bytes) -> Counter:
    """Op kind → count (custom ops as "CUSTOM:<name>")."""
    return Counter(_graph(buf).histogram())
