"""What store operations return: typed results with their JSON form (the CLI's `--json`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .selftest import SelfTestResult


@dataclass
class PublishResult:
    model: str
    version: str
    url: str
    manifest_sha256: str
    signed_by: str | None
    files: list[str]
    aliases: list[str]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PullResult:
    model: str
    version: str
    out_dir: Path
    artifacts: list[dict[str, Any]]
    signature: str | None        # verified key id, None when no public key was given

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "out_dir": str(self.out_dir),
                "signature_verified_key_id": self.signature,
                "artifacts": [{k: a[k] for k in ("path", "format", "precision", "sha256", "bytes")}
                              for a in self.artifacts]}


@dataclass
class VerifyResult:
    model: str
    version: str
    results: list[SelfTestResult]
    signature: str | None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "passed": self.passed,
                "signature_verified_key_id": self.signature, "artifacts": [r.to_json() for r in self.results]}


@dataclass
class FsckReport:
    url: str
    problems: list[str] = field(default_factory=list)
    versions_checked: int = 0
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"store": self.url, "ok": self.ok, "problems": self.problems,
                "versions_checked": self.versions_checked, "files_checked": self.files_checked}


# -- preparing a version from a build dir ----------------------------------------------------------
