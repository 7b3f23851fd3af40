"""A pipeline bundle: a face detector and a landmark model released as one signed version.

The bundle's manifest holds each component's artifacts, self-tests and evidence under the
component's own directory (`face_detector/…`, `attention_mesh/…`: a pulled bundle's component
directory reads like a pulled single model), the components' I/O contracts, the pipeline block
(modelzoo.photo.contract: the processing rules the two were validated under), the whole-photo
parity evidence, and which detector artifact pairs with each landmark artifact. One signature
covers all of it, so the two networks and their glue can only be taken together."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

from . import card as _card
from .errors import PublishError
from .manifest import CARD, SCHEMA, dumps, finite, git_commit, now_utc
from .publish import Progress, prepare_version

ROLES = ("detector", "landmarks")


def pairing(detector_targets: Iterable[tuple[str, str]], landmark_targets: Iterable[tuple[str, str]]
            ) -> dict[str, dict[str, str]]:
    """"format/precision" of each landmark artifact → the detector artifact's format/precision it runs
    with: the same precision when the detector ships it, else the detector's fp32 (see
    modelzoo.photo.networks.detector_precision)."""
    have = set(detector_targets)
    out = {}
    for fmt, prec in landmark_targets:
        det = (fmt, prec) if (fmt, prec) in have else (fmt, "fp32")
        if det in have:
            out[f"{fmt}/{prec}"] = {"detector": f"{det[0]}/{det[1]}", "landmarks": f"{fmt}/{prec}"}
    return out


def photo_verdicts(photo_parity: dict[str, Any]) -> tuple[set[tuple[str, str]], dict[str, str]]:
    """The landmark targets (format, precision) that passed whole-photo parity on every photo, and
    why each other one is left out (failed on a photo, or not run on this machine)."""
    ok: dict[str, bool] = {}
    excluded: dict[str, str] = {}
    for r in photo_parity["rows"]:
        ok[r["candidate"]] = ok.get(r["candidate"], True) and bool(r.get("passed"))
        if not r.get("passed"):
            got = r.get("worst_mean_iod_pct")
            excluded.setdefault(r["candidate"], f"failed on {Path(r['photo']).name}: " + (
                f"mean {got:.4g}% IOD > {r['bound_mean_iod_pct']:g}%" if got is not None
                else f"{r['faces']} face(s) vs {r['reference_faces']}"))
    for sk in photo_parity.get("skipped") or []:
        excluded.setdefault(sk["candidate"], f"not run: {sk['reason']}")
    shipped = {tuple(c.split("/", 1)) for c, good in ok.items() if good and c not in excluded}
    return shipped, excluded


def _only(manifest: dict[str, Any], files: list[tuple[str, Path | bytes]], shipped: set[tuple[str, str]],
          detector: bool) -> tuple[dict[str, Any], list[tuple[str, Path | bytes]]]:
    """The part of one component's version the bundle ships: the landmark artifacts of `shipped`
    targets, the detector artifacts they pair with; evidence stays."""
    if detector:
        have = {(a["format"], a["precision"]) for a in manifest["artifacts"]}
        keep = {(f, p if (f, p) in have else "fp32") for f, p in shipped}
    else:
        keep = shipped
    arts = [a for a in manifest["artifacts"] if (a["format"], a["precision"]) in keep]
    paths = {a["path"] for a in arts}
    rows = [r for r in manifest["files"] if r["artifact"] is None or r["artifact"] in paths]
    names = {r["path"] for r in rows}
    return dict(manifest, artifacts=arts, files=rows), [(rel, src) for rel, src in files if rel in names]


def _prefixed(model: str, manifest: dict[str, Any], files: list[tuple[str, Path | bytes]]):
    p = f"{model}/"
    arts = []
    for a in manifest["artifacts"]:
        a = dict(a, path=p + a["path"], members=[p + m for m in a["members"]], component=model)
        a["selftest"] = dict(a["selftest"], path=p + a["selftest"]["path"])
        arts.append(a)
    rows = [dict(r, path=p + r["path"], artifact=p + r["artifact"] if r["artifact"] else None, component=model)
            for r in manifest["files"]]
    return arts, rows, [(p + rel, src) for rel, src in files]


def prepare_pipeline(name: str, components: dict[str, tuple[str, Path | str]], version: str,
                     block: dict[str, Any], photo_parity: dict[str, Any] | None, *,
                     aliases: Iterable[str] = (), progress: Progress = None
                     ) -> tuple[dict[str, Any], list[tuple[str, Path | bytes]]]:
    """The unsigned manifest and files of a pipeline bundle. `components` maps each role
    ("detector", "landmarks") to (zoo model id, build directory); every component needs its
    passing parity report, and the bundle its passing whole-photo parity (`photo_parity`, the
    output of validation.pipeline.validate_photos)."""
    if set(components) != set(ROLES):
        raise PublishError(f"a pipeline bundle needs exactly the roles {', '.join(ROLES)}, not {sorted(components)}")
    if not isinstance(photo_parity, dict) or not photo_parity.get("rows"):
        raise PublishError("no whole-photo parity for the pipeline; a bundle ships only what passed "
                           "`meshport validate --photos`")
    shipped, excluded = photo_verdicts(photo_parity)
    if not shipped:
        raise PublishError("no target of the pipeline passed whole-photo parity: "
                           + "; ".join(f"{t}: {why}" for t, why in sorted(excluded.items())))
    arts, rows, files, parts = [], [], [], {}
    for role in ROLES:
        model, build_dir = components[role]
        m, f = prepare_version(model, build_dir, version, require_parity=True, progress=progress)
        m, f = _only(m, f, shipped, detector=role == "detector")
        a, r, f = _prefixed(model, m, f)
        arts += a
        rows += r
        files += f
        parts[role] = {"model": model, "description": m["description"], "spec_sha256": m["source"]["spec_sha256"],
                       "io_contract": m["io_contract"], "license": m["license"], "evidence": m["evidence"],
                       "tool_versions": m["tool_versions"]}
    for role in ROLES:
        if block[role]["model"] != parts[role]["model"]:
            raise PublishError(f"the pipeline block's {role} is {block[role]['model']}, the bundle's is "
                               f"{parts[role]['model']}")
    targets = {role: {(a["format"], a["precision"]) for a in arts if a["component"] == parts[role]["model"]}
               for role in ROLES}
    data = dumps(finite(photo_parity))
    files.append(("evidence/photo_parity.json", data))
    rows.append({"path": "evidence/photo_parity.json", "role": "evidence", "artifact": None, "format": None,
                 "precision": None, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    tool_versions = {k: v for p in parts.values() for k, v in p["tool_versions"].items()}
    manifest: dict[str, Any] = {
        "schema": SCHEMA, "kind": "pipeline", "model": name, "version": version, "created": now_utc(),
        "description": (f"Face pipeline: {parts['detector']['model']} finds faces, {parts['landmarks']['model']} "
                        "puts landmarks on each, under the pinned processing rules."),
        "source": {"model": name, **git_commit()},
        "tool_versions": tool_versions,
        "components": parts,
        "pipeline": dict(block, pairing=pairing(targets["detector"], targets["landmarks"]),
                         excluded=[{"target": t, "reason": why} for t, why in sorted(excluded.items())]),
        "artifacts": arts,
        "evidence": {"photo_parity": finite(photo_parity), "photo_parity_file": "evidence/photo_parity.json"},
        "license": {"code": "Apache-2.0", "weights": None},
        "aliases": sorted(aliases),
        "model_card": CARD,
        "signed_by": None,
        "files": rows,
    }
    return manifest, files


def render_card(m: dict[str, Any]) -> str:
    """The bundle's card: what is pinned, the pipeline rules, usage, then each component's card."""
    block, parts = m["pipeline"], m["components"]
    photo = (m.get("evidence") or {}).get("photo_parity") or {}
    lines = [f"# {m['model']} {m['version']}", "",
             "_Generated by `meshport release` from the signed manifest; do not edit._", "", m["description"], "",
             "## What is pinned", "",
             f"- Signature: Ed25519 over the canonical manifest, key id `{m['signed_by']}`" if m.get("signed_by")
             else "- Signature: **unsigned**",
             f"- Source commit: `{m['source'].get('git_commit') or 'unknown'}`",
             f"- Pipeline contract: `{block['contract']}`", ""]
    lines += _card._table(["role", "model", "spec sha256", "input", "size"],
                          [[role, f"`{p['model']}`", f"`{p['spec_sha256'][:16]}…`", f"`{block[role]['input']}`",
                            block[role]["input_size"]] for role, p in parts.items()])
    lines += ["", "## Processing rules", ""]
    lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in block["rules"].items()]
    lines += [f"- detector: score ≥ {block['detector']['min_score']}, weighted NMS IoU {block['detector']['nms_iou']}",
              f"- landmarks: face flag ≥ {block['landmarks']['min_face_flag']}, {block['landmarks']['points']} points "
              f"from `{block['landmarks']['output']}`", "", "### Pairs", ""]
    lines += _card._table(["target", "detector artifact", "landmark artifact"],
                          [[t, p["detector"], p["landmarks"]] for t, p in sorted(block["pairing"].items())])
    lines += ["", "## Whole-photo parity (vs the PyTorch pipeline)", ""]
    lines += _card._table(["photo", "target", "detector", "faces", "worst mean % IOD", "bound", "passed"],
                          [[Path(r["photo"]).name, r["candidate"], r.get("detector"), r.get("faces"),
                            r.get("worst_mean_iod_pct"), r.get("bound_mean_iod_pct"), r.get("passed")]
                           for r in photo.get("rows", [])])
    for x in block.get("excluded") or []:
        lines.append(f"- **not shipped**: {x['target']} — {x['reason']}")
    lines += ["", "## Usage", "", "Python, on any runner, without torch:", "", "```python",
              "from meshport.runtime import FacePipeline",
              'pipeline = FacePipeline.from_pulled("pulled/", format="tflite", precision="fp16")',
              "faces = pipeline.process(rgb_uint8_image).faces     # landmarks in image pixels", "```", ""]
    for role, p in parts.items():
        arts = [a for a in m["artifacts"] if a["component"] == p["model"]]
        lines += _card.usage_snippets(arts, p["io_contract"], header=f"{role}: ")
    for role, p in parts.items():
        sub = {"model": p["model"], "version": m["version"], "created": m["created"], "description": p["description"],
               "source": {"spec_sha256": p["spec_sha256"], **{k: m["source"].get(k) for k in ("git_commit", "git_dirty")}},
               "signed_by": m.get("signed_by"), "io_contract": p["io_contract"], "license": p["license"],
               "evidence": p["evidence"], "tool_versions": p["tool_versions"],
               "artifacts": [a for a in m["artifacts"] if a["component"] == p["model"]]}
        lines += ["", *("#" + ln if ln.startswith("#") else ln for ln in _card.render(sub).splitlines())]
    return "\n".join(lines) + "\n"
