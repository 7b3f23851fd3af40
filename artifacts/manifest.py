"""The version manifest: every file with sha256/size/format/precision, the I/O contract, tool
versions, parity and latency evidence, source, licence/attribution and a signature."""
from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from pathlib import Path
from typing import Any

SCHEMA = "meshport.manifest/1"
MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def dumps(doc: Any) -> bytes:
    """Readable, stable JSON (sorted keys) for files in the store."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def finite(x: Any) -> Any:
    """JSON-safe copy: NaN/±inf become the strings "NaN"/"Infinity"/"-Infinity" (canonical JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, dict):
        return {str(k): finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def git_commit(cwd: Path | None = None) -> dict[str, Any]:
    """The working tree's commit (None outside git) and whether tracked files were modified."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"git_commit": None, "git_dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=20)
        return {"git_commit": head.stdout.strip(),
                "git_dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def io_contract(spec: Any) -> dict[str, Any]:
    def tensor(t: Any) -> dict[str, Any]:
        return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "layout": t.layout, "meaning": t.meaning,
                "units": t.units, "value_range": list(t.value_range) if t.value_range else None,
                "channel_order": t.channel_order}
    return {"preprocessing": spec.preprocessing, "inputs": [tensor(t) for t in spec.inputs],
            "outputs": [tensor(t) for t in spec.outputs], "landmark_outputs": list(spec.landmark_outputs)}


def license_block(spec: Any) -> dict[str, Any]:
    w = spec.weights
    weights = ({"source": w.source, "members": list(w.members), "license": w.license, "attribution": w.attribution,
                "notes": w.notes} if w else
               {"source": "seeded random initialisation (no imported weights)", "members": [], "license": None,
                "attribution": None, "notes": "not trained; for pipeline and runtime work, not for predictions"})
    return {"code": "Apache-2.0", "weights": weights}


def summarise_parity(parity: Any) -> dict[str, Any] | None:
    """A compact view of parity.json: one row per edge (reference → candidate, input set)."""
    if not isinstance(parity, dict):
        return None
    rows = []
    for e in parity.get("edges") or []:
        if not isinstance(e, dict):
            continue
        outs = e.get("outputs") or {}
        outs = outs.values() if isinstance(outs, dict) else outs
        worst = max((o.get("max_abs") for o in outs if isinstance(o, dict)
                     and isinstance(o.get("max_abs"), (int, float))), default=None)
        lm = next((o.get("landmarks") for o in (e.get("outputs") or {}).values()
                   if isinstance(o, dict) and o.get("name") == "landmarks"), None) \
            if isinstance(e.get("outputs"), dict) else None
        all_ = (lm or {}).get("all") or {}
        rows.append({"reference": e.get("reference"), "candidate": e.get("candidate"), "format": e.get("format"),
                     "precision": e.get("precision"), "input_set": e.get("input_set"), "passed": e.get("passed"),
                     "max_abs": worst, "landmarks_max_px": all_.get("max_px"),
                     "landmarks_mean_iod_pct": all_.get("mean_iod_pct")})
    return finite({"passed": parity.get("passed"), "spec_sha256": parity.get("spec_sha256"),
                   "edges": rows, "errors": parity.get("errors") or []})


LATENCY_KEYS = ("artifact", "format", "precision", "runtime", "device", "threads", "warmup", "runs",
                "median_ms", "p90_ms", "min_ms", "peak_rss_mb")


def summarise_latency(latency: Any) -> dict[str, Any] | None:
    records = latency if isinstance(latency, list) else (
        (latency.get("records") or latency.get("results") or []) if isinstance(latency, dict) else None)
    if records is None:
        return None
    rows = [{k: r.get(k) for k in LATENCY_KEYS} for r in records if isinstance(r, dict)]
    skipped = latency.get("skipped") if isinstance(latency, dict) else None
    return finite({"records": rows, "skipped": skipped if isinstance(skipped, list) else []})


def parity_failures(parity: Any) -> list[str]:
    if not isinstance(parity, dict):
        return []
    bad = [f"{e.get('reference')} → {e.get('candidate')} [{e.get('input_set')}]"
           for e in parity.get("edges") or [] if isinstance(e, dict) and e.get("passed") is False]
    bad += [f"{e.get('artifact')} @ {e.get('runner')}: {e.get('error')}" for e in parity.get("errors") or []
            if isinstance(e, dict)]
    if not bad and parity.get("passed") is False:
        bad.append("parity.json says passed=false")
    return bad
