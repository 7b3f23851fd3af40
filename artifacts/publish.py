"""Preparing a version for the store from a build directory: the build record checked (spec,
hashes), the parity evidence required unless waived, one self-test bundle per artifact, the
manifest with the I/O contract and evidence, the model card, and the signature."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from runtime.errors import IntegrityError
from runtime.files import sha256_path
from runtime.record import BuildRecord

from . import card as _card
from . import signing
from .errors import PublishError
from .manifest import (CARD, SCHEMA, dumps, finite, git_commit, io_contract, license_block, now_utc,
                       parity_failures, summarise_latency, summarise_parity)
from .selftest import make_bundle
from .versions import check_relpath

Progress = Callable[[str], None] | None


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise PublishError(f"{what} {path} is not valid JSON: {exc}") from None


def prepare_version(model: str, build_dir: Path | str, version: str, *, formats: Iterable[str] | None = None,
                    precisions: Iterable[str] | None = None, aliases: Iterable[str] = (),
                    allow_failed_parity: bool = False, require_parity: bool = False,
                    progress: Progress = None) -> tuple[dict[str, Any], list[tuple[str, Path | bytes]]]:
    """The unsigned manifest and the (store path, local file or bytes) list of one version."""
    import modelzoo

    say = progress or (lambda m: None)
    modelzoo.use_build_dir(build_dir)
    spec = modelzoo.get_spec(model)
    record = BuildRecord.load(build_dir, spec)
    root = record.root
    entries = record.select(formats, precisions)
    if not entries:
        have = ", ".join(f"{e.format}/{e.precision}" for e in record.artifacts) or "none"
        raise PublishError(f"no artifact of {record.path} matches formats={sorted(formats or [])} "
                           f"precisions={sorted(precisions or [])}; the build has: {have}")
    parity = _read_json(root / "parity.json", "parity report")
    latency = _read_json(root / "latency.json", "latency report")
    if parity is None and require_parity:
        raise PublishError(f"no parity report at {root / 'parity.json'}; run `meshport validate {model} --build {build_dir}`")
    if isinstance(parity, dict) and parity.get("spec_sha256") not in (None, spec.sha256()):
        raise PublishError(f"{root / 'parity.json'} was produced for another spec of {model}; re-run validate")
    failures = parity_failures(parity)
    if failures and not allow_failed_parity:
        raise PublishError(f"parity failed for {len(failures)} edge(s) of {model}, e.g. {failures[0]}; "
                           "fix the build or publish with --allow-failed-parity")

    files: list[tuple[str, Path | bytes]] = []
    file_rows: list[dict[str, Any]] = []
    art_rows: list[dict[str, Any]] = []
    for e in entries:
        rel = check_relpath(e.path)
        local = root / rel
        if not local.exists():
            raise PublishError(f"{local} is listed in build.json but missing; rebuild")
        say(f"hash {rel}")
        digest = sha256_path(local)
        if digest != e.sha256:
            raise IntegrityError(f"{local} changed since it was built (sha256 {digest[:12]} ≠ build.json "
                                 f"{e.sha256[:12]}); rebuild before publishing")
        kind = "directory" if local.is_dir() else "file"
        members: list[str] = []
        if kind == "file":
            files.append((rel, local))
            file_rows.append({"path": rel, "role": "artifact", "artifact": rel, "format": e.format,
                              "precision": e.precision, "sha256": digest, "bytes": local.stat().st_size})
        else:
            for p in sorted(q for q in local.rglob("*") if q.is_file()):
                member = check_relpath(f"{rel}/{p.relative_to(local).as_posix()}")
                members.append(member)
                files.append((member, p))
                file_rows.append({"path": member, "role": "artifact-member", "artifact": rel, "format": e.format,
                                  "precision": e.precision, "sha256": sha256_path(p), "bytes": p.stat().st_size})
        say(f"self-test {rel}")
        bundle, meta = make_bundle(local, e, spec)
        st_rel = f"selftest/{rel}.npz"
        files.append((st_rel, bundle))
        st_row = {"path": st_rel, "role": "selftest", "artifact": rel, "format": e.format,
                  "precision": e.precision, "sha256": hashlib.sha256(bundle).hexdigest(), "bytes": len(bundle)}
        file_rows.append(st_row)
        art_rows.append(finite({
            "path": rel, "kind": kind, "format": e.format, "precision": e.precision, "sha256": digest,
            "bytes": sum(r["bytes"] for r in file_rows if r["artifact"] == rel and r["role"] != "selftest"),
            "members": members, "inputs": [t.to_json() for t in e.inputs],
            "outputs": [t.to_json() for t in e.outputs],
            "build": {k: e.get(k) for k in ("step", "options", "cache_key") if k in e.details},
            "quick_parity": e.get("quick_parity"), "gpu_check": e.get("gpu_check"),
            "selftest": {"path": st_rel, "sha256": st_row["sha256"], "input": meta["input"],
                         "tolerances": meta["tolerances"]}}))
    for name, doc in (("parity.json", parity), ("latency.json", latency)):
        if doc is not None:
            data = (root / name).read_bytes()
            files.append((f"evidence/{name}", data))
            file_rows.append({"path": f"evidence/{name}", "role": "evidence", "artifact": None, "format": None,
                              "precision": None, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    manifest: dict[str, Any] = {
        "schema": SCHEMA, "model": model, "version": version, "created": now_utc(),
        "description": spec.description,
        "source": {"model": model, "spec_sha256": record.spec_sha256, **git_commit()},
        "tool_versions": record.tool_versions,
        "io_contract": finite(io_contract(spec)),
        "artifacts": art_rows,
        "evidence": {"parity": summarise_parity(parity), "latency": summarise_latency(latency),
                     "parity_file": "evidence/parity.json" if parity is not None else None,
                     "latency_file": "evidence/latency.json" if latency is not None else None},
        "license": license_block(spec),
        "aliases": sorted(aliases),
        "model_card": CARD,
        "signed_by": None,
    }
    manifest["files"] = file_rows
    return manifest, files


def finish_manifest(manifest: dict[str, Any], files: list[tuple[str, Path | bytes]],
                     key: Path | str | None) -> bytes:
    """Add the model card, then sign; returns the manifest bytes."""
    if key:
        manifest["signed_by"] = signing.private_key_id(key)
    text = _card.render(manifest).encode("utf-8")
    files.append((CARD, text))
    manifest["files"] = manifest["files"] + [{"path": CARD, "role": "model-card", "artifact": None, "format": None,
                                              "precision": None, "sha256": hashlib.sha256(text).hexdigest(),
                                              "bytes": len(text)}]
    if key:
        manifest = signing.sign(manifest, key)
    else:
        manifest["signature"] = None
    return dumps(manifest)
