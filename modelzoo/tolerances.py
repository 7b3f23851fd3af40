"""The one tolerance evaluator: the converters' quick gate, `validate` and the store's self-tests
all resolve a spec's tolerance to `Bounds` here and judge outputs with `evaluate`.

A tolerance must bound an output on every input set: a landmark output needs a max-abs or a
max-px bound as well as any %IOD bound (the inter-ocular distance means nothing on a seeded
input without a face), every other output needs a max-abs bound. A tolerance that resolves to
no bound that applies everywhere is a `ToleranceError`, never a pass.

Runtimes that impose their own arithmetic (the GPU accelerator computes in fp16 by default) are
judged by the spec's `COMPUTE_FP16` tolerance, each bound loosened to the artifact's own where
that is looser."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import MeshportError
from .metrics import point_errors

COMPUTE_FP16 = "fp16-compute"   # tolerance-table precision key of fp16 arithmetic imposed by a runtime


class ToleranceError(MeshportError):
    """A tolerance resolves to no bound that applies to every input (or the spec has none)."""


@dataclass(frozen=True)
class Bounds:
    """The resolved bounds of one output. `atol` bounds max |a − b| over every element;
    `max_px` the largest 2-D point distance and `mean_iod_pct` the mean point distance as % of
    the inter-ocular distance (landmark outputs only; the latter only where a face has an IOD).
    `rtol` bounds max |a − b| relative to max |a|: with `atol` too, the bound is their sum."""

    atol: float | None = None
    max_px: float | None = None
    mean_iod_pct: float | None = None
    landmark: bool = False
    reason: str = ""
    rtol: float | None = None

    def abs_bound(self, ref: np.ndarray) -> float | None:
        """The bound on max |a − b| for this reference: atol + rtol·max|ref| (None: unbounded)."""
        if self.atol is None and self.rtol is None:
            return None
        scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
        return (self.atol or 0.0) + (self.rtol or 0.0) * scale

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Bounds":
        known = {k: d[k] for k in ("atol", "max_px", "mean_iod_pct", "landmark", "reason", "rtol") if k in d}
        return cls(**known)

    def check_applicable(self, what: str) -> "Bounds":
        """Raise ToleranceError unless a bound applies to every input (seeded ones included)."""
        if self.atol is None and self.rtol is None and not (self.landmark and self.max_px is not None):
            need = "atol, rtol or max_px" if self.landmark else "atol or rtol"
            has = ", ".join(f"{k}={v:g}" for k, v in (("max_px", self.max_px), ("mean_iod_pct", self.mean_iod_pct))
                            if v is not None) or "nothing"
            raise ToleranceError(f"{what}: the tolerance bounds only {has}, which does not apply to every input; "
                                 f"give it {need}")
        return self


def _loosened(bound: float | None, other: float | None) -> float | None:
    """`bound`, raised to `other` where both exist and `other` is looser."""
    return max(bound, other) if bound is not None and other is not None else bound


def resolve(spec: Any, fmt: str, precision: str, output: str, compute: str | None = None) -> Bounds:
    """The bounds of one (format, precision, output), for a runtime computing in `compute`
    (None: the artifact's own arithmetic; "fp16": COMPUTE_FP16 loosened to the artifact's bounds)."""
    what = f"{spec.id} {fmt}/{precision}/{output}" + (f" ({compute} compute)" if compute else "")
    try:
        tol = spec.tolerance(fmt, precision, output)
    except KeyError:
        raise ToleranceError(f"{what}: the spec has no tolerance") from None
    landmark = output in spec.landmark_outputs
    b = Bounds(tol.atol, tol.max_px if landmark else None, tol.mean_iod_pct if landmark else None, landmark,
               tol.reason, tol.rtol)
    if compute == "fp16":
        try:
            c = spec.tolerance(fmt, COMPUTE_FP16, output)
        except KeyError:
            raise ToleranceError(f"{what}: the spec has no {COMPUTE_FP16} tolerance") from None
        # The compute tolerance, each of its bounds loosened to the artifact's own where that is
        # looser (int8 weights on fp16 arithmetic: the int8 bounds).
        b = Bounds(_loosened(c.atol, b.atol), _loosened(c.max_px, b.max_px) if landmark else None,
                   _loosened(c.mean_iod_pct, b.mean_iod_pct) if landmark else None, landmark,
                   "; ".join(r for r in (c.reason, tol.reason) if r), _loosened(c.rtol, b.rtol))
    elif compute is not None:
        raise ToleranceError(f"{what}: unknown compute precision {compute!r}; known: fp16")
    return b.check_applicable(what)


@dataclass
class OutputCheck:
    """The verdict on one output: its error figures and every bound it broke."""

    name: str
    bounds: Bounds
    max_abs: float
    mean_abs: float
    failures: list[str] = field(default_factory=list)
    landmarks: dict[str, dict[str, float | None]] | None = None   # region → max_px, mean_px, mean_iod_pct
    abs_bound: float | None = None    # the bound max_abs was held to (atol + rtol·max|ref|)

    @property
    def passed(self) -> bool:
        return not self.failures


def evaluate(name: str, bounds: Bounds, ref: np.ndarray, got: np.ndarray, iod: float | None = None,
             regions: Mapping[str, Sequence[int]] | None = None) -> OutputCheck:
    """Judge `got` against `ref` by `bounds`. Landmark figures are given per region (index sets
    into the points; default: all); the %IOD bound applies per region where `iod` is known."""
    a, b = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if a.size != b.size:
        return OutputCheck(name, bounds, float("inf"), float("inf"), [f"shape {list(b.shape)} ≠ {list(a.shape)}"])
    a, b = a.reshape(-1), b.reshape(-1)
    finite = bool(np.all(np.isfinite(b)))
    err = np.abs(a - b) if finite else np.full_like(a, np.inf)
    r = OutputCheck(name, bounds, float(err.max()) if err.size else 0.0, float(err.mean()) if err.size else 0.0)
    if not finite:
        r.failures.append("non-finite values")
    r.abs_bound = bounds.abs_bound(a)
    if r.abs_bound is not None and not r.max_abs <= r.abs_bound:
        if bounds.rtol is None:
            r.failures.append(f"max abs {r.max_abs:.3g} > atol {bounds.atol:g}")
        else:
            r.failures.append(f"max abs {r.max_abs:.3g} > {r.abs_bound:.3g} ("
                              + (f"atol {bounds.atol:g} + " if bounds.atol is not None else "")
                              + f"rtol {bounds.rtol:g} × max|ref| {float(np.max(np.abs(a))):.3g})")
    if bounds.landmark:
        dim = np.asarray(ref).shape[-1]
        px = point_errors(a.reshape(-1, dim), b.reshape(-1, dim)) if finite else np.full(a.size // dim, np.inf)
        sets = regions or {"all": range(len(px))}
        r.landmarks = {}
        for region, idx in sets.items():
            p = px[list(idx)]
            r.landmarks[region] = {"max_px": float(p.max()), "mean_px": float(p.mean()),
                                   "mean_iod_pct": float(100 * p.mean() / iod) if iod else None}
        worst = max(m["max_px"] for m in r.landmarks.values())
        if bounds.max_px is not None and not worst <= bounds.max_px:
            r.failures.append(f"max {worst:.3g} px > {bounds.max_px:g} px")
        if bounds.mean_iod_pct is not None and iod:
            for region, m in r.landmarks.items():
                if not m["mean_iod_pct"] <= bounds.mean_iod_pct:
                    r.failures.append(f"{region}: mean {m['mean_iod_pct']:.3g}% IOD > {bounds.mean_iod_pct:g}%")
    return r
