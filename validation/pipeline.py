"""Whole-photo parity: the photo pipeline (modelzoo.photo) of every built format against the
PyTorch one, faces and landmarks compared (photo_parity.json)."""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np

import modelzoo
from modelzoo.metrics import landmark_errors
from modelzoo.photo import PhotoResult
from modelzoo.photo.networks import DETECTOR, PipelineBuildError, built_targets, detector_precision, open_pipeline
from runtime.errors import UsageError
from runtime.files import write_json_atomic
from runtime.record import BuildRecord

def compare_photos(results: dict[str, PhotoResult], landmark_model: str = "attention_mesh") -> dict[str, dict]:
    """Largest-face landmark error of each candidate PhotoResult against the "pytorch" one:
    max / mean px and mean % of the inter-ocular distance (the landmark model's spec's pair),
    per photo."""
    landmarks = modelzoo.get_spec(landmark_model).landmarks
    if landmarks is None:
        raise PipelineBuildError(f"{landmark_model} declares no landmarks to compare")
    ref = results["pytorch"]
    out = {}
    for name, res in results.items():
        if name == "pytorch":
            continue
        if len(res.faces) != len(ref.faces):
            out[name] = {"faces": len(res.faces), "reference_faces": len(ref.faces)}
            continue
        rows = []
        for a, b in zip(ref.faces, res.faces):
            rows.append({**landmark_errors(a.landmarks, b.landmarks, landmarks.inter_ocular_distance(a.landmarks)),
                         "box_max_px": float(np.abs(a.box - b.box).max())})
        out[name] = {"faces": len(res.faces), "per_face": rows}
    return out


# A compiled fp32 pipeline agrees with PyTorch to ~1e-5 px on the detections, but the warp
# quantises sampling positions to 1/32 px, so the crop (and the landmarks) may move by a few
# thousandths of a pixel: fp32 photo parity is bounded at 0.01% of the inter-ocular distance.
FP32_PHOTO_IOD_PCT = 0.01
PHOTO_PARITY_JSON = "photo_parity.json"


def photo_bound(spec, fmt: str, precision: str) -> float:
    """Mean-landmark-error bound (% IOD) of a compiled pipeline on whole photos: the landmark
    network's own bound (fp32: none) plus the warp's quantisation, which every format adds (the
    crop a reduced-precision detector gives moves the crop too; the network bound covers both)."""
    try:
        tol = spec.tolerance(fmt, precision, "landmarks")
    except KeyError:
        tol = None
    network = tol.mean_iod_pct if tol is not None and tol.mean_iod_pct is not None else 0.0
    return network + FP32_PHOTO_IOD_PCT


def validate_photos(photos: list[Path | str], build: Path | str, landmark_model: str = "attention_mesh",
                    progress=None) -> dict:
    """Every format/precision built for both the detector and `landmark_model` runs the photo
    pipeline on each photo; faces and landmarks are compared with the PyTorch pipeline.
    Writes <build>/<landmark_model>/photo_parity.json; raises ParityError when any fails."""
    from modelzoo.photo import load_image

    from .compare import ParityError

    build = Path(build)
    images = {str(p): load_image(p) for p in photos}
    if not images:
        raise UsageError("validate_photos needs at least one photo")
    BuildRecord.load(build, modelzoo.get_spec(DETECTOR))
    targets = built_targets(landmark_model, build)
    spec = modelzoo.get_spec(landmark_model)
    results: dict[str, dict] = {name: {} for name in images}
    skipped = []
    for fmt, precision in [("pytorch", "fp32")] + sorted(targets):
        key = "pytorch" if fmt == "pytorch" else f"{fmt}/{precision}"
        try:
            with ExitStack() as stack:
                pipe = open_pipeline(stack, landmark_model, build=build, fmt=fmt, precision=precision)
                for name, img in images.items():
                    results[name][key] = pipe.process(img)
        except PipelineBuildError as exc:           # e.g. no runner for this format on this machine
            skipped.append({"candidate": key, "reason": str(exc)})
            continue
        if progress:
            progress(key)
    rows, failures = [], []
    for name, res in results.items():
        for cand, cmp in compare_photos(res, landmark_model).items():
            fmt, precision = cand.split("/")
            bound = photo_bound(spec, fmt, precision)
            faces = res[cand].faces
            row = {"photo": name, "candidate": cand, "detector": f"{fmt}/{detector_precision(build, fmt, precision)}",
                   "faces": len(faces),
                   "reference_faces": len(res["pytorch"].faces), "bound_mean_iod_pct": bound}
            per_face = cmp.get("per_face")
            if per_face is not None:
                row["worst_mean_iod_pct"] = max((f["mean_iod_pct"] or 0.0 for f in per_face), default=0.0)
                row["worst_max_px"] = max((f["max_px"] for f in per_face), default=0.0)
                row["worst_box_px"] = max((f["box_max_px"] for f in per_face), default=0.0)
            row["passed"] = per_face is not None and row["worst_mean_iod_pct"] <= bound
            rows.append(row)
            if not row["passed"]:
                failures.append(row)
    out = {"model": landmark_model, "detector": DETECTOR, "photos": list(images), "rows": rows,
           "skipped": skipped, "passed": not failures}
    path = build / landmark_model / PHOTO_PARITY_JSON
    write_json_atomic(path, out)
    out["path"] = str(path)
    if failures:
        lines = [f"{r['candidate']} on {r['photo']}: {r['faces']} face(s) vs {r['reference_faces']}"
                 + (f", mean {r['worst_mean_iod_pct']:.4g}% IOD > {r['bound_mean_iod_pct']:g}%"
                    if "worst_mean_iod_pct" in r else "") for r in failures]
        raise ParityError("photo pipeline parity failed:\n" + "\n".join(lines), out)
    return out


def format_photo_parity(out: dict) -> str:
    lines = [f"{'photo':<28} {'candidate (vs PyTorch)':<16} {'faces':>5} {'mean %IOD':>10} {'max px':>9} "
             f"{'box px':>9}  verdict"]
    for r in out["rows"]:
        iod = f"{r['worst_mean_iod_pct']:>10.5f}" if "worst_mean_iod_pct" in r else f"{'-':>10}"
        px = f"{r['worst_max_px']:>9.2e}" if "worst_max_px" in r else f"{'-':>9}"
        bx = f"{r['worst_box_px']:>9.2e}" if "worst_box_px" in r else f"{'-':>9}"
        lines.append(f"{Path(r['photo']).name[:28]:<28} {r['candidate']:<16} {r['faces']:>5} {iod} {px} {bx}  "
                     f"{'pass' if r['passed'] else 'FAIL'}")
    for s in out["skipped"]:
        lines.append(f"skipped {s['candidate']}: {s['reason']}")
    return "\n".join(lines)
