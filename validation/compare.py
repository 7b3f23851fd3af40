"""The comparator: the same inputs to every runner, explicit edges (reference → candidate), and
per-output result objects with the error statistics and the tolerance that decided them.
Landmark outputs also get pixel and inter-ocular-distance metrics per region (the paper's metric)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelzoo.errors import MeshportError
from modelzoo.spec import ModelSpec
from modelzoo.tolerances import evaluate, resolve



class ParityError(MeshportError):
    """One or more edges failed; the message lists every failing output with its numbers."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


def regions(spec: ModelSpec) -> dict[str, list[int]]:
    """Landmark index sets per named region, as the spec declares them (none without landmarks)."""
    if spec.landmarks is None:
        return {}
    return {name: list(idx) for name, idx in spec.landmarks.regions.items()}


def face_iod(spec: ModelSpec, ref: dict[str, np.ndarray]) -> float | None:
    """The inter-ocular distance of the first face of a reference batch, by the spec's IOD pair
    (None when the spec declares no landmarks or pair, or `ref` lacks the landmark output)."""
    lm = spec.landmarks
    if lm is None or lm.output not in ref:
        return None
    a = np.asarray(ref[lm.output])
    if a.ndim < 2 or a.size == 0 or a.size % (lm.points * a.shape[-1]):
        return None
    return lm.inter_ocular_distance(a.reshape(-1, lm.points, a.shape[-1])[0])


@dataclass
class OutputResult:
    name: str
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    min_atol: float                       # the smallest atol that would pass (= max_abs)
    tolerance: dict[str, Any]             # the resolved bounds (modelzoo.tolerances.Bounds)
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
    compute: str | None = None            # arithmetic the runner imposed ("fp16" on the GPU accelerator)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def to_json(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        d["outputs"] = {o["name"]: o for o in d["outputs"]}
        return d


def compare(spec: ModelSpec, fmt: str, precision: str, ref: dict[str, np.ndarray], got: dict[str, np.ndarray],
            is_face: bool, compute: str | None = None) -> list[OutputResult]:
    """Every output of `got` judged against `ref` by the spec's tolerance (modelzoo.tolerances),
    resolved for the runner's arithmetic (`compute`)."""
    results = []
    iod = face_iod(spec, ref) if is_face else None
    lm = spec.landmarks
    for out in spec.outputs:
        a, b = ref[out.name].astype(np.float64), got[out.name].astype(np.float64)
        err = np.abs(a - b)
        rel = err / np.maximum(np.abs(a), 1e-6)
        bounds = resolve(spec, fmt, precision, out.name, compute)
        # Named regions index one face's points: applied when the output holds exactly one face.
        sets = regions(spec) if lm is not None and out.name == lm.output and a.size == lm.points * a.shape[-1] \
            else None
        check = evaluate(out.name, bounds, a, b, iod, sets)
        results.append(OutputResult(out.name, check.max_abs, check.mean_abs, float(np.percentile(err, 99)),
                                    float(rel.max()), check.max_abs,
                                    {**bounds.to_json(), **({"abs_bound": check.abs_bound} if bounds.rtol is not None
                                                            else {})}, check.passed,
                                    check.failures, check.landmarks))
    return results


def failure_table(edges: list[EdgeResult]) -> str:
    """Every failing output of every failing edge, one line each."""
    lines = []
    for e in edges:
        for o in e.outputs:
            if not o.passed:
                lines.append(f"  {e.reference} → {e.candidate} [{e.input_set}] {o.name}: " + "; ".join(o.failures))
    return "\n".join(lines)


def landmark_result(outputs: list[OutputResult], spec: ModelSpec | None = None) -> OutputResult | None:
    """The result of the spec's landmark output (`spec.landmarks.output`); without a spec, the
    first output with landmark figures (outputs come in spec order). None when there is none."""
    if spec is not None:
        name = spec.landmarks.output if spec.landmarks is not None else None
        return next((o for o in outputs if o.name == name), None)
    return next((o for o in outputs if o.landmarks), None)


def worst_by_candidate(edges: list[EdgeResult], spec: ModelSpec | None = None) -> dict[str, dict]:
    """Per candidate (vs PyTorch), over all inputs: worst max abs error of any output, worst
    landmark max px, worst mean % IOD (faces; None when no face input or no landmarks), and
    whether every edge passed. Landmark figures are those of `landmark_result`."""
    worst: dict[str, dict] = {}
    for e in edges:
        if e.reference != "pytorch":
            continue
        w = worst.setdefault(e.candidate, {"max_abs": 0.0, "max_px": 0.0, "iod": None, "passed": True})
        w["passed"] &= e.passed
        w["max_abs"] = max([w["max_abs"]] + [o.max_abs for o in e.outputs])
        lm = landmark_result(e.outputs, spec)
        if lm and lm.landmarks:
            w["max_px"] = max(w["max_px"], lm.landmarks["all"]["max_px"])
            if lm.landmarks["all"]["mean_iod_pct"] is not None:
                w["iod"] = max(w["iod"] or 0.0, lm.landmarks["all"]["mean_iod_pct"])
    return worst
