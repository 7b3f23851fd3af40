"""`meshport validate`: every artifact of a build against PyTorch (and ONNX against TFLite) on
the same named inputs; parity.json and report.html next to build.json."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import modelzoo
from runtime.files import write_json_atomic
from runtime.record import ArtifactRecord, BuildRecord
from runtime.runners import DEFAULT_RUNNERS, RunnerError, get_runner, runner_for

from .compare import EdgeResult, ParityError, compare, failure_table
from .inputs import InputCase, input_sets


@dataclass
class Validation:
    model: str
    root: Path
    cases: list[InputCase]
    edges: list[EdgeResult] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)          # artifacts/runners that could not run
    skipped: list[dict] = field(default_factory=list)         # runners unavailable here, with why
    outputs: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)  # runner id → case → out
    localisation: list[dict] = field(default_factory=list)
    record: BuildRecord | None = None

    @property
    def passed(self) -> bool:
        return not self.errors and all(e.passed for e in self.edges)

    def to_json(self) -> dict:
        spec = modelzoo.get_spec(self.model)
        return {"model": self.model, "spec_sha256": spec.sha256(),
                "tool_versions": self.record.tool_versions if self.record else {},
                "inputs": [{"name": c.name, "kind": c.kind} for c in self.cases],
                "edges": [e.to_json() for e in self.edges], "errors": self.errors, "skipped": self.skipped,
                "localisation": self.localisation,
                "gpu_check": {a.path: a.get("gpu_check")
                              for a in (self.record.select(["tflite"]) if self.record else [])},
                "passed": self.passed}


def validate(model_id: str, build_dir: Path | str, progress: Callable[[str], None] | None = None,
             write: bool = True, localise: bool = True) -> Validation:
    """Run every artifact on every available runner; write parity.json (+ report.html)."""
    say = progress or (lambda m: None)
    modelzoo.use_build_dir(build_dir)
    spec = modelzoo.get_spec(model_id)
    record = BuildRecord.load(build_dir, spec)
    root = record.root
    v = Validation(model_id, root, input_sets(spec), record=record)
    say("pytorch: reference")
    ref = _run_all(get_runner("pytorch")(spec), v.cases)
    v.outputs["pytorch"] = ref
    for entry in record.artifacts:
        for name in DEFAULT_RUNNERS.get(entry.format, ()):
            avail = get_runner(name).is_available()
            if not avail.ok:
                v.skipped.append({"artifact": entry.path, "runner": name, "reason": avail.reason})
                continue
            rid = f"{entry.path}@{name}"
            say(f"{rid}")
            try:
                got = _run_all(runner_for(name, spec, root, entry), v.cases)
            except RunnerError as exc:
                v.errors.append({"artifact": entry.path, "runner": name, "error": str(exc)})
                continue
            v.outputs[rid] = got
            v.edges += judge(spec, "pytorch", rid, entry, ref, got, v.cases, get_runner(name).compute)
    # Neighbour edges: ONNX → each TFLite artifact (same XNNPACK runner), to see where a chain diverges.
    onnx_id = next((k for k in v.outputs if k.endswith(".onnx@onnxruntime")), None)
    if onnx_id:
        for rid in [k for k in v.outputs if k.endswith(".tflite@tflite")]:
            entry = next(a for a in record.artifacts if rid.startswith(a.path + "@"))
            v.edges += judge(spec, onnx_id, rid, entry, v.outputs[onnx_id], v.outputs[rid], v.cases)
    if localise and not v.passed:
        from .localize import localise_failures
        v.localisation = localise_failures(v, spec, say)
    if write:
        write_json_atomic(root / "parity.json", v.to_json())
        from .report import write_report
        write_report(v, root / "report.html")
    return v


def judge(spec, reference: str, candidate: str, entry: ArtifactRecord, ref: dict[str, dict[str, np.ndarray]],
          got: dict[str, dict[str, np.ndarray]], cases: list[InputCase], compute: str | None = None
          ) -> list[EdgeResult]:
    """One edge per input case: the candidate's outputs against the reference's, by the spec's
    tolerance for the artifact's format and precision under the runner's arithmetic."""
    return [EdgeResult(reference, candidate, entry.format, entry.precision, case.name, case.kind,
                       compare(spec, entry.format, entry.precision, ref[case.name], got[case.name],
                               case.is_face, compute), compute)
            for case in cases]


def require_passed(v: Validation) -> None:
    if v.passed:
        return
    lines = [f"{len([e for e in v.edges if not e.passed])} of {len(v.edges)} edges failed for {v.model}:"]
    table = failure_table(v.edges)
    if table:
        lines.append(table)
    for err in v.errors:
        lines.append(f"  {err['artifact']} @ {err['runner']}: {err['error']}")
    for loc in v.localisation:
        lines.append(f"  first divergence {loc['reference']} → {loc['candidate']}: {loc.get('node')} ({loc.get('detail')})")
    raise ParityError("\n".join(lines), v.to_json())


def _run_all(runner, cases: list[InputCase]) -> dict[str, dict[str, np.ndarray]]:
    name = runner.spec.inputs[0].name
    with runner as r:
        return {c.name: r.infer({name: c.array}) for c in cases}
