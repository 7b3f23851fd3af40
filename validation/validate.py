"""`meshport validate`: every artifact of a build against PyTorch (and ONNX against TFLite) on
the same named inputs; parity.json and report.html next to build.json."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import modelzoo
from modelzoo.errors import MeshportError

from .compare import EdgeResult, ParityError, compare, failure_table
from .inputs import InputCase, input_sets
from .runners import DEFAULT_RUNNERS, RunnerError, get_runner, runner_for


class BuildRecordError(MeshportError):
    """The build directory or its build.json is missing, corrupt or for another model/spec."""


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
    record: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.errors and all(e.passed for e in self.edges)

    def to_json(self) -> dict:
        spec = modelzoo.get_spec(self.model)
        return {"model": self.model, "spec_sha256": spec.sha256(),
                "tool_versions": self.record.get("tool_versions", {}),
                "inputs": [{"name": c.name, "kind": c.kind} for c in self.cases],
                "edges": [e.to_json() for e in self.edges], "errors": self.errors, "skipped": self.skipped,
                "localisation": self.localisation,
                "gpu_check": {a["path"]: a.get("gpu_check") for a in self.record.get("artifacts", [])
                              if a["format"] == "tflite"},
                "passed": self.passed}


def load_record(build_dir: Path | str, model_id: str) -> tuple[Path, dict]:
    root = Path(build_dir) / model_id
    path = root / "build.json"
    if not path.is_file():
        raise BuildRecordError(f"no build record at {path}; run `meshport build {model_id} --out {build_dir}`")
    try:
        record = json.loads(path.read_text())
        artifacts = record["artifacts"]
        if record["model"] != model_id or not isinstance(artifacts, list):
            raise ValueError(f"record is for {record.get('model')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildRecordError(f"corrupt build record {path}: {exc}") from None
    spec = modelzoo.get_spec(model_id)
    if record.get("spec_sha256") != spec.sha256():
        raise BuildRecordError(f"{path} was built from another spec of {model_id} (spec sha256 "
                               f"{str(record.get('spec_sha256'))[:12]} ≠ {spec.sha256()[:12]}); rebuild it")
    return root, record


def validate(model_id: str, build_dir: Path | str, progress: Callable[[str], None] | None = None,
             write: bool = True, localise: bool = True) -> Validation:
    """Run every artifact on every available runner; write parity.json (+ report.html)."""
    say = progress or (lambda m: None)
    spec = modelzoo.get_spec(model_id)
    root, record = load_record(build_dir, model_id)
    v = Validation(model_id, root, input_sets(spec), record=record)
    say("pytorch: reference")
    ref = _run_all(get_runner("pytorch")(spec), v.cases)
    v.outputs["pytorch"] = ref
    for entry in record["artifacts"]:
        for name in DEFAULT_RUNNERS.get(entry["format"], ()):
            avail = get_runner(name).is_available()
            if not avail.ok:
                v.skipped.append({"artifact": entry["path"], "runner": name, "reason": avail.reason})
                continue
            rid = f"{entry['path']}@{name}"
            say(f"{rid}")
            try:
                got = _run_all(runner_for(name, spec, root, entry), v.cases)
            except RunnerError as exc:
                v.errors.append({"artifact": entry["path"], "runner": name, "error": str(exc)})
                continue
            v.outputs[rid] = got
            v.edges += judge(spec, "pytorch", rid, entry, ref, got, v.cases, get_runner(name).compute)
    # Neighbour edges: ONNX → each TFLite artifact (same XNNPACK runner), to see where a chain diverges.
    onnx_id = next((k for k in v.outputs if k.endswith(".onnx@onnxruntime")), None)
    if onnx_id:
        for rid in [k for k in v.outputs if k.endswith(".tflite@tflite")]:
            entry = next(a for a in record["artifacts"] if rid.startswith(a["path"] + "@"))
            v.edges += judge(spec, onnx_id, rid, entry, v.outputs[onnx_id], v.outputs[rid], v.cases)
    if localise and not v.passed:
        from .localize import localise_failures
        v.localisation = localise_failures(v, spec, say)
    if write:
        _write_json(root / "parity.json", v.to_json())
        from .report import write_report
        write_report(v, root / "report.html")
    return v


def judge(spec, reference: str, candidate: str, entry: dict, ref: dict[str, dict[str, np.ndarray]],
          got: dict[str, dict[str, np.ndarray]], cases: list[InputCase], compute: str | None = None
          ) -> list[EdgeResult]:
    """One edge per input case: the candidate's outputs against the reference's, by the spec's
    tolerance for the artifact's format and precision under the runner's arithmetic."""
    return [EdgeResult(reference, candidate, entry["format"], entry["precision"], case.name, case.kind,
                       compare(spec, entry["format"], entry["precision"], ref[case.name], got[case.name],
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


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, path)
