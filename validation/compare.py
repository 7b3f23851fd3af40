"""The comparator: the same inputs to every runner, explicit edges (reference → candidate), and
per-output result objects with the error statistics and the tolerance that decided them.
Landmark outputs also get pixel and inter-ocular-distance metrics per region (the paper's metric)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelzoo.errors import MeshportError
from modelzoo.metrics import inter_ocular_distance, point_errors
from modelzoo.spec import ModelSpec, Tolerance



class ParityError(MeshportError):
    """One or more edges failed; the message lists every failing output with its numbers."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


def regions(spec: ModelSpec) -> dict[str, list[int]]:
    """Landmark index sets per region of the 478-point contract: all, lips, eyes, iris."""
    from modelzoo.attention_mesh.regions import LEFT_EYE, LIPS, RIGHT_EYE
    return {"all": list(range(478)), "lips": list(LIPS), "eyes": sorted(set(LEFT_EYE) | set(RIGHT_EYE)),
            "iris": list(range(468, 478))}


@dataclass
class OutputResult:
    name: str
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    min_atol: float                       # the smallest atol that would pass (= max_abs)
    tolerance: dict[str, Any]
    passed: bool
    failures: list[str] = field(default_factory=list)
    landmarks: dict[str, dict[str, float]] | None = None   # region → max_px, mean_px, mean_iod_pct


@dataclass
class EdgeResult:
    reference: str
    candidate: str
    format: str
    precision: str
    input_set: str
    input_kind: str
    outputs: list[OutputResult]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def to_json(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        d["outputs"] = {o["name"]: o for o in d["outputs"]}
        return d


def compare(spec: ModelSpec, fmt: str, precision: str, ref: dict[str, np.ndarray], got: dict[str, np.ndarray],
            is_face: bool) -> list[OutputResult]:
    results = []
    iod = inter_ocular_distance(ref["landmarks"].reshape(-1, 478, 3)[0]) if is_face and "landmarks" in ref else None
    for out in spec.outputs:
        a, b = ref[out.name].astype(np.float64), got[out.name].astype(np.float64)
        err = np.abs(a - b)
        rel = err / np.maximum(np.abs(a), 1e-6)
        tol = spec.tolerance(fmt, precision, out.name)
        r = OutputResult(out.name, float(err.max()), float(err.mean()), float(np.percentile(err, 99)),
                         float(rel.max()), float(err.max()), asdict(tol), True)
        if tol.atol is not None and not r.max_abs <= tol.atol:
            r.failures.append(f"max abs {r.max_abs:.3g} > atol {tol.atol:g}")
        if out.name in spec.landmark_outputs:
            r.landmarks = _landmark_metrics(out.name, a, b, iod, spec)
            worst = r.landmarks["all"]
            if tol.max_px is not None and not worst["max_px"] <= tol.max_px:
                r.failures.append(f"max {worst['max_px']:.3g} px > {tol.max_px:g} px")
            if tol.mean_iod_pct is not None and iod:
                for region, m in r.landmarks.items():
                    if m.get("mean_iod_pct") is not None and not m["mean_iod_pct"] <= tol.mean_iod_pct:
                        r.failures.append(f"{region}: mean {m['mean_iod_pct']:.3g}% IOD > {tol.mean_iod_pct:g}%")
        r.passed = not r.failures
        results.append(r)
    return results


def _landmark_metrics(name: str, a: np.ndarray, b: np.ndarray, iod: float | None,
                      spec: ModelSpec) -> dict[str, dict[str, float]]:
    px = point_errors(a, b)
    sets = regions(spec) if name == "landmarks" else {"all": list(range(len(px)))}
    out = {}
    for region, idx in sets.items():
        p = px[idx]
        m = {"max_px": float(p.max()), "mean_px": float(p.mean())}
        m["mean_iod_pct"] = float(100 * p.mean() / iod) if iod else None
        out[region] = m
    return out


def failure_table(edges: list[EdgeResult]) -> str:
    """Every failing output of every failing edge, one line each."""
    lines = []
    for e in edges:
        for o in e.outputs:
            if not o.passed:
                lines.append(f"  {e.reference} → {e.candidate} [{e.input_set}] {o.name}: " + "; ".join(o.failures))
    return "\n".join(lines)


def worst_by_candidate(edges: list[EdgeResult]) -> dict[str, dict]:
    """Per candidate (vs PyTorch), over all inputs: worst max abs error of any output, worst
    landmark max px, worst mean % IOD (faces; None when no face input or no landmarks), and
    whether every edge passed."""
    worst: dict[str, dict] = {}
    for e in edges:
        if e.reference != "pytorch":
            continue
        w = worst.setdefault(e.candidate, {"max_abs": 0.0, "max_px": 0.0, "iod": None, "passed": True})
        w["passed"] &= e.passed
        w["max_abs"] = max([w["max_abs"]] + [o.max_abs for o in e.outputs])
        lm = next((o for o in e.outputs if o.name == "landmarks"), None)
        if lm and lm.landmarks:
            w["max_px"] = max(w["max_px"], lm.landmarks["all"]["max_px"])
            if lm.landmarks["all"]["mean_iod_pct"] is not None:
                w["iod"] = max(w["iod"] or 0.0, lm.landmarks["all"]["mean_iod_pct"])
    return worst
