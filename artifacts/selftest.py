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

from modelzoo.metrics import inter_ocular_distance

from .errors import PublishError, SelfTestError

FALLBACK_ATOL = 1e-2             # non-landmark outputs (face_flag, a probability) under an IOD-only tolerance
FALLBACK_REASON = "non-landmark output under an IOD-only tolerance: absolute difference ≤ 0.01"


def run_artifact(path: Path, fmt: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one artifact on the host: ONNX Runtime, LiteRT (TFLite) or the NumPy MIL evaluator (Core ML)."""
    if fmt == "onnx":
        import onnxruntime as ort
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feed)))
    if fmt == "tflite":
        from converters.onnx_tflite import run_tflite
        return run_tflite(Path(path), feed)
    if fmt == "coreml":
        from converters.mil_eval import MILProgram
        return MILProgram(path).run(feed)
    raise SelfTestError(f"no host runner for format {fmt!r}; known: onnx, tflite, coreml")


def golden_input(entry: dict[str, Any]) -> dict[str, np.ndarray]:
    """The real sample face in the artifact's declared layout and dtype."""
    from modelzoo.data import sample_face

    inputs = entry.get("inputs") or []
    if len(inputs) != 1:
        raise PublishError(f"{entry.get('path')}: self-test supports one image input, the build record lists "
                           f"{len(inputs)}")
    (inp,) = inputs
    shape, layout = list(inp["shape"]), inp.get("layout")
    if layout not in ("NCHW", "NHWC") or len(shape) != 4:
        raise PublishError(f"{entry.get('path')}: input {inp['name']!r} has no image layout (layout={layout!r})")
    size = int(shape[2] if layout == "NCHW" else shape[1])
    x = sample_face(size)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return {inp["name"]: x.astype(inp.get("dtype") or "float32")}


def _iod(outputs: dict[str, np.ndarray]) -> float | None:
    lm = outputs.get("landmarks")
    return None if lm is None else inter_ocular_distance(lm)


def tolerance_rules(spec: Any, fmt: str, precision: str, outputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per output: the check the self-test applies, resolved from the spec's tolerance table."""
    iod = _iod(outputs)
    rules = {}
    for name in outputs:
        try:
            tol = spec.tolerance(fmt, precision, name)
        except KeyError:
            raise PublishError(f"{spec.id}: the spec has no tolerance for {fmt}/{precision}/{name}") from None
        rule: dict[str, Any] = {"reason": tol.reason} if tol.reason else {}
        is_landmark = name in spec.landmark_outputs
        if tol.atol is not None:
            rule["atol"] = tol.atol
        if is_landmark and tol.max_px is not None:
            rule["max_px"] = tol.max_px
        if is_landmark and tol.mean_iod_pct is not None and iod:
            rule.update(mean_iod_pct=tol.mean_iod_pct, iod_px=iod)
        if not ({"atol", "max_px", "mean_iod_pct"} & set(rule)):
            rule.update(atol=FALLBACK_ATOL, reason=FALLBACK_REASON)
        rules[name] = rule
    return rules


def make_bundle(artifact: Path, entry: dict[str, Any], spec: Any) -> tuple[bytes, dict[str, Any]]:
    """Run `artifact` on the sample face; returns the `.npz` bytes and its metadata."""
    feed = golden_input(entry)
    outputs = {k: np.asarray(v) for k, v in run_artifact(artifact, entry["format"], feed).items()}
    meta = {"artifact": entry["path"], "format": entry["format"], "precision": entry["precision"],
            "artifact_sha256": entry["sha256"], "input": "modelzoo.data.sample_face",
            "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                           "layout": next(i.get("layout") for i in entry["inputs"] if i["name"] == k)}
                       for k, v in feed.items()},
            "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in outputs.items()},
            "tolerances": tolerance_rules(spec, entry["format"], entry["precision"], outputs)}
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
        rule = meta["tolerances"].get(name, {"atol": FALLBACK_ATOL})
        row: dict[str, Any] = {"rule": rule, "failures": []}
        if name not in got:
            row["failures"].append("missing output")
        elif np.asarray(got[name]).size != want.size:
            row["failures"].append(f"shape {list(np.shape(got[name]))} ≠ {list(want.shape)}")
        else:
            a, b = np.asarray(want, np.float64).reshape(-1), np.asarray(got[name], np.float64).reshape(-1)
            err = np.abs(a - b)
            row["max_abs"] = float(err.max()) if err.size else 0.0
            if not np.all(np.isfinite(b)):
                row["failures"].append("non-finite values")
            if "atol" in rule and not row["max_abs"] <= rule["atol"]:
                row["failures"].append(f"max abs {row['max_abs']:.3g} > atol {rule['atol']:g}")
            if ("max_px" in rule or "mean_iod_pct" in rule) and want.shape[-1] in (2, 3):
                d = want.shape[-1]
                px = np.linalg.norm(a.reshape(-1, d)[:, :2] - b.reshape(-1, d)[:, :2], axis=-1)
                row["max_px"], row["mean_px"] = float(px.max()), float(px.mean())
                if "max_px" in rule and not row["max_px"] <= rule["max_px"]:
                    row["failures"].append(f"max {row['max_px']:.3g} px > {rule['max_px']:g} px")
                if "mean_iod_pct" in rule:
                    row["mean_iod_pct"] = 100.0 * row["mean_px"] / rule["iod_px"]
                    if not row["mean_iod_pct"] <= rule["mean_iod_pct"]:
                        row["failures"].append(f"mean {row['mean_iod_pct']:.3g}% IOD > {rule['mean_iod_pct']:g}%")
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
