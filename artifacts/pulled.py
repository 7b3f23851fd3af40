"""A pulled version on disk (`meshport pull` output): manifest.json, the artifacts, selftest/.
`verify_dir` checks every file against the manifest and runs the self-tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from runtime.errors import IntegrityError, MissingFileError
from runtime.files import sha256_path

from . import trust
from .errors import NotFoundError
from .manifest import MANIFEST
from .results import VerifyResult
from .selftest import run_bundle
from .versions import check_relpath

Progress = Callable[[str], None] | None
UNVERIFIED = "UNVERIFIED"      # written by `pull --insecure`: the manifest signature was not checked


def verify_dir(path: Path | str, public_key: Path | str | None = None, progress: Progress = None, *,
               insecure: bool = False) -> VerifyResult:
    """Self-test the artifacts of a pulled directory (manifest.json + artifacts + selftest/), after
    verifying the manifest signature against the trusted keys (plus `public_key`) unless `insecure`.
    The result's `signature` is the verifying key id, None when unverified."""
    say = progress or (lambda m: None)
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise MissingFileError(f"{root / MANIFEST} not found; pull a version first") from None
    except ValueError as exc:
        raise IntegrityError(f"{root / MANIFEST} is not JSON: {exc}") from None
    kid = None if insecure else trust.verify_trusted(manifest, [public_key])
    results = []
    for a in manifest["artifacts"]:
        local = root / check_relpath(a["path"])
        if not local.exists():
            continue
        if sha256_path(local) != a["sha256"]:
            raise IntegrityError(f"{local}: sha256 ≠ manifest (modified after pull)")
        bundle = root / check_relpath(a["selftest"]["path"])
        if not bundle.is_file() or sha256_path(bundle) != a["selftest"]["sha256"]:
            raise IntegrityError(f"{bundle}: self-test bundle missing or ≠ manifest")
        say(f"self-test {a['path']}")
        results.append(run_bundle(local, bundle))
    if not results:
        raise NotFoundError(f"{root} holds none of the artifacts its manifest lists")
    return VerifyResult(manifest["model"], manifest["version"], results, kid)
