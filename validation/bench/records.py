"""latency.json (DESIGN §4): one record per (artifact, runtime, device, threads), written next to
build.json. A new measurement replaces the record with the same key and keeps the others, so host
and device runs of one build accumulate in one file."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.files import write_json_atomic
from runtime.runners import RunnerError

LATENCY_JSON = "latency.json"
# The contract's fields, in order; anything else a record carries goes after them.
RECORD_FIELDS = ("model", "artifact", "format", "precision", "runtime", "device", "threads", "warmup", "runs",
                 "median_ms", "p90_ms", "min_ms", "peak_rss_mb", "tool_versions")
SCHEMA = 1


class LatencyFileError(RunnerError):
    """latency.json exists but cannot be read as Meshport latency records."""


@dataclass
class LatencyRecord:
    model: str
    artifact: str               # path relative to the build dir, or "pytorch:<model>" for eager PyTorch
    format: str
    precision: str
    runtime: str
    device: str
    threads: int | None
    warmup: int
    runs: int
    median_ms: float
    p90_ms: float | None        # None where the tool reports no p90 (benchmark_model gives p5/p95)
    min_ms: float
    peak_rss_mb: float | None
    tool_versions: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.artifact, self.runtime, self.device, self.threads)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in RECORD_FIELDS:
            v = getattr(self, k)
            out[k] = round(v, 4) if isinstance(v, float) else v
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LatencyRecord":
        missing = [k for k in RECORD_FIELDS if k not in data]
        if missing:
            raise LatencyFileError(f"latency record lacks {missing}: {data}")
        return cls(**{k: data[k] for k in RECORD_FIELDS},
                   extra={k: v for k, v in data.items() if k not in RECORD_FIELDS})


def read_latency(path: Path) -> tuple[list[LatencyRecord], list[dict]]:
    """(records, skipped) from a latency.json; empty if the file does not exist."""
    path = Path(path)
    if not path.exists():
        return [], []
    try:
        data = json.loads(path.read_text())
        return [LatencyRecord.from_json(r) for r in data["records"]], list(data.get("skipped", []))
    except LatencyFileError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise LatencyFileError(f"{path} is not a Meshport latency file: {exc}") from exc


def write_latency(path: Path, model: str, records: list[LatencyRecord], skipped: list[dict] | None = None,
                  merge: bool = True) -> Path:
    """Write (atomically) `records` into `path`, replacing same-key records already there."""
    path = Path(path)
    old, old_skipped = read_latency(path) if merge else ([], [])
    new_keys = {r.key for r in records}
    kept = [r for r in old if r.key not in new_keys and r.model == model]
    skipped = list(skipped or [])
    skip_keys = {(s.get("artifact"), s.get("runtime")) for s in skipped}
    ran = {(r.artifact, r.runtime) for r in records}
    skipped += [s for s in old_skipped if (s.get("artifact"), s.get("runtime")) not in skip_keys | ran]
    data = {"schema": SCHEMA, "model": model, "records": [r.to_json() for r in kept + records],
            "skipped": skipped}
    write_json_atomic(path, data)
    return path
