"""Self-test bundles: one real face input per artifact, the outputs that artifact produced at
publish time, and the tolerances from the spec, in one small `.npz`. Running a bundle checks that
the file being run computes what was validated (on the host here; the same file works on device)."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelzoo.tolerances import Bounds, ToleranceError, evaluate, resolve

from runtime.record import ArtifactRecord

from .errors import PublishError, SelfTestError



# The runner each format's self-test runs on here (any OS): the same file works on device.
HOST_RUNNERS = {"onnx": "onnxruntime", "tflite": "tflite", "coreml": "mil"}


def run_artifact(path: Path, fmt: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one artifact on the host, feeds and outputs in the artifact's own layout."""
    from runtime.runners import get_runner
    if fmt not in HOST_RUNNERS:
        raise SelfTestError(f"no host runner for format {fmt!r}; known: {', '.join(HOST_RUNNERS)}")
    with get_runner(HOST_RUNNERS[fmt])(None, Path(path)) as runner:
        return runner.run_native(feed)


SEEDED_INPUT = "seeded: numpy default_rng(0).random, NCHW"   # the self-test input of a non-face input


def golden_input(entry: ArtifactRecord) -> dict[str, np.ndarray]:
    """The real sample face in the artifact's declared layout and dtype; for an input that is not a
    square 3-channel image (a user's model), a seeded uniform [0, 1) tensor of its shape."""
    from modelzoo.data import sample_face

    if len(entry.inputs) != 1:
        raise PublishError(f"{entry.path}: self-test supports one image input, the build record lists "
                           f"{len(entry.inputs)}")
    (inp,) = entry.inputs
    if inp.layout not in ("NCHW", "NHWC") or len(inp.shape) != 4:
        raise PublishError(f"{entry.path}: input {inp.name!r} has no image layout (layout={inp.layout!r})")
    n, c, h, w = (int(d) for d in (inp.shape if inp.layout == "NCHW" else
                                   (inp.shape[0], inp.shape[3], inp.shape[1], inp.shape[2])))
    x = sample_face(h) if _face_input(entry) else np.random.default_rng(0).random((n, c, h, w), dtype=np.float32)
    if inp.layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return {inp.name: x.astype(inp.dtype)}


def _face_input(entry: ArtifactRecord) -> bool:
    """The artifact's one input is a square 3-channel image of batch 1: the sample face fits it."""
    (inp,) = entry.inputs
    n, c, h, w = inp.shape if inp.layout == "NCHW" else (inp.shape[0], inp.shape[3], inp.shape[1], inp.shape[2])
    return n == 1 and c == 3 and h == w


def _iod(spec: Any, outputs: dict[str, np.ndarray]) -> float | None:
    """The golden face's inter-ocular distance, by the spec's landmarks (None without them)."""
    lm = spec.landmarks
    return None if lm is None or lm.output not in outputs else lm.inter_ocular_distance(outputs[lm.output])


def tolerance_rules(spec: Any, fmt: str, precision: str, outputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per output: the bounds the self-test applies (resolved by modelzoo.tolerances), with the
    inter-ocular distance of the golden face for %IOD bounds."""
    iod = _iod(spec, outputs)
    rules = {}
    for name in outputs:
        try:
            rule = resolve(spec, fmt, precision, name).to_json()
        except ToleranceError as exc:
            raise PublishError(str(exc)) from None
        if "mean_iod_pct" in rule and iod:
            rule["iod_px"] = iod
        rules[name] = rule
    return rules


def make_bundle(artifact: Path, entry: ArtifactRecord, spec: Any) -> tuple[bytes, dict[str, Any]]:
    """Run `artifact` on the sample face; returns the `.npz` bytes and its metadata."""
    feed = golden_input(entry)
    outputs = {k: np.asarray(v) for k, v in run_artifact(artifact, entry.format, feed).items()}
    layouts = {i.name: i.layout for i in entry.inputs}
    meta = {"artifact": entry.path, "format": entry.format, "precision": entry.precision,
            "artifact_sha256": entry.sha256,
            "input": "modelzoo.data.sample_face" if _face_input(entry) else SEEDED_INPUT,
            "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "layout": layouts[k]}
                       for k, v in feed.items()},
            "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in outputs.items()},
            "tolerances": tolerance_rules(spec, entry.format, entry.precision, outputs)}
    buf = io.BytesIO()
    arrays = {f"in__{k}": v for k, v in feed.items()} | {f"out__{k}": v for k, v in outputs.items()}
    np.savez_compressed(buf, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return buf.getvalue(), meta


@dataclass
class SelfTestResult:
    artifact: str
    passed: bool
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "passed": self.passed, "outputs": self.outputs}


def load_bundle(data: bytes | Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with np.load(src, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        ins = {k[4:]: z[k] for k in z.files if k.startswith("in__")}
        outs = {k[5:]: z[k] for k in z.files if k.startswith("out__")}
    return meta, ins, outs


def check(meta: dict[str, Any], golden: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> SelfTestResult:
    res = SelfTestResult(meta["artifact"], True)
    for name, want in golden.items():
        rule = meta["tolerances"].get(name)
        row: dict[str, Any] = {"rule": rule, "failures": []}
        if rule is None:
            row["failures"].append("the bundle has no tolerance for this output")
        elif name not in got:
            row["failures"].append("missing output")
        else:
            bounds = Bounds.from_json({"landmark": "max_px" in rule or "mean_iod_pct" in rule, **rule})
            try:
                bounds.check_applicable(f"{meta['artifact']} {name}")
                result = evaluate(name, bounds, want, np.asarray(got[name]), rule.get("iod_px"))
            except ToleranceError as exc:
                row["failures"].append(str(exc))
            else:
                row["max_abs"] = result.max_abs
                if result.landmarks:
                    row.update({k: v for k, v in result.landmarks["all"].items() if v is not None})
                row["failures"] += result.failures
        row["passed"] = not row["failures"]
        res.passed &= row["passed"]
        res.outputs[name] = row
    return res


def run_bundle(artifact: Path, bundle: bytes | Path) -> SelfTestResult:
    """Run `artifact` on the bundle's input and compare with its golden outputs."""
    meta, ins, outs = load_bundle(bundle)
    got = run_artifact(Path(artifact), meta["format"], ins)
    return check(meta, outs, got)


def require_passed(res: SelfTestResult) -> None:
    if res.passed:
        return
    lines = [f"self-test of {res.artifact} failed:"]
    for name, row in res.outputs.items():
        if not row["passed"]:
            lines.append(f"  {name}: " + "; ".join(row["failures"]))
    raise SelfTestError("\n".join(lines))
