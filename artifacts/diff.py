"""Two versions of a model side by side, for CI: per artifact (format × precision) what changed —
the file, its parity against PyTorch (worst figures over every edge and input set of the version's
evidence) and its latency (median per runtime × threads) — and a verdict per artifact: FAIL when
the newer version's own evidence fails, REGRESSED when an error grew or a runtime slowed beyond
the allowed factor, else OK. As JSON (`to_json`), a table (`format`) and JUnit XML (`junit_xml`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from runtime.errors import UsageError

# Defaults: latency is measured in different runs (often on different hosts), so only a clear
# slowdown counts; errors are deterministic, so a small relative growth does (plus a floor under
# which float noise of near-zero errors is not a change).
MAX_SLOWDOWN = 1.25
MAX_ERROR_GROWTH = 0.10
ERROR_FLOOR = {"max_abs": 1e-4, "max_px": 1e-3, "mean_iod_pct": 1e-3}
METRICS = ("max_abs", "max_px", "mean_iod_pct")


@dataclass
class ArtifactDiff:
    format: str
    precision: str
    old: dict[str, Any] | None              # manifest artifact row of the older version (None: added)
    new: dict[str, Any] | None              # … of the newer version (None: removed)
    parity: dict[str, dict[str, float | None]] = field(default_factory=dict)   # metric → {old, new}
    latency: list[dict[str, Any]] = field(default_factory=list)               # per runtime × threads
    problems: list[str] = field(default_factory=list)
    verdict: str = "OK"

    @property
    def key(self) -> str:
        return f"{self.format}/{self.precision}"

    @property
    def change(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "same file" if self.old.get("sha256") == self.new.get("sha256") else "changed"

    def to_json(self) -> dict[str, Any]:
        return {"artifact": self.key, "change": self.change, "verdict": self.verdict, "problems": self.problems,
                "old": _brief(self.old), "new": _brief(self.new), "parity": self.parity, "latency": self.latency}


@dataclass
class VersionDiff:
    model: str
    old_version: str
    new_version: str
    artifacts: list[ArtifactDiff]
    max_slowdown: float = MAX_SLOWDOWN
    max_error_growth: float = MAX_ERROR_GROWTH

    @property
    def passed(self) -> bool:
        return all(a.verdict == "OK" for a in self.artifacts)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "old": self.old_version, "new": self.new_version, "passed": self.passed,
                "max_slowdown": self.max_slowdown, "max_error_growth": self.max_error_growth,
                "artifacts": [a.to_json() for a in self.artifacts]}

    def format(self) -> str:
        head = (f"{'artifact':<14} {'change':<10} {'worst max px':>22} {'worst mean %IOD':>22} "
                f"{'median ms (slowest Δ)':>24}  verdict")
        lines = [f"{self.model}: {self.old_version} → {self.new_version}", head, "-" * len(head)]
        for a in self.artifacts:
            lat = max(a.latency, key=lambda r: r.get("ratio") or 0.0, default=None)
            ms = (f"{_num(lat['old_ms'])} → {_num(lat['new_ms'])} ×{lat['ratio']:.2f}"
                  if lat and lat.get("ratio") is not None else "—")
            lines.append(f"{a.key:<14} {a.change:<10} {_pair(a.parity.get('max_px')):>22} "
                         f"{_pair(a.parity.get('mean_iod_pct')):>22} {ms:>24}  {a.verdict}")
            lines += [f"    {p}" for p in a.problems]
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)

    def junit_xml(self) -> bytes:
        """One testsuite, one testcase per artifact; FAIL and REGRESSED are failures."""
        failed = [a for a in self.artifacts if a.verdict != "OK"]
        suite = ET.Element("testsuite", name=f"meshport diff {self.model} {self.old_version}..{self.new_version}",
                           tests=str(len(self.artifacts)), failures=str(len(failed)), errors="0", skipped="0")
        for a in self.artifacts:
            case = ET.SubElement(suite, "testcase", classname=f"{self.model}.{a.format}", name=a.precision)
            if a.verdict != "OK":
                fail = ET.SubElement(case, "failure", type=a.verdict, message="; ".join(a.problems))
                fail.text = "\n".join(a.problems)
        return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def diff_manifests(old: dict[str, Any], new: dict[str, Any], *, max_slowdown: float = MAX_SLOWDOWN,
                   max_error_growth: float = MAX_ERROR_GROWTH) -> VersionDiff:
    """Compare two manifests of one model (the older first)."""
    if old.get("model") != new.get("model"):
        raise UsageError(f"cannot diff {old.get('model')} against {new.get('model')}")
    rows_old = {(a["format"], a["precision"]): a for a in old.get("artifacts", [])}
    rows_new = {(a["format"], a["precision"]): a for a in new.get("artifacts", [])}
    par_old, par_new = _parity_by_artifact(old), _parity_by_artifact(new)
    lat_old, lat_new = _latency_by_artifact(old), _latency_by_artifact(new)
    out = []
    for key in sorted(set(rows_old) | set(rows_new)):
        a = ArtifactDiff(*key, rows_old.get(key), rows_new.get(key))
        po, pn = par_old.get(key, {}), par_new.get(key, {})
        a.parity = {m: {"old": po.get(m), "new": pn.get(m)} for m in METRICS if m in po or m in pn}
        if a.new is None:
            a.problems.append(f"{a.key} is no longer shipped")
            a.verdict = "REGRESSED"
        if pn.get("passed") is False:
            a.problems.append(f"{new.get('version')}'s own parity evidence fails for {a.key}")
            a.verdict = "FAIL"
        for m, v in a.parity.items():
            o, n = v["old"], v["new"]
            if o is not None and n is not None and n > o * (1 + max_error_growth) and n - o > ERROR_FLOOR[m]:
                a.problems.append(f"worst {m} grew {_num(o)} → {_num(n)} (more than {max_error_growth:.0%})")
                a.verdict = a.verdict if a.verdict == "FAIL" else "REGRESSED"
        lo, ln = lat_old.get(key, {}), lat_new.get(key, {})
        for rk in sorted(set(lo) | set(ln), key=str):
            o, n = lo.get(rk), ln.get(rk)
            ratio = n / o if o and n else None
            a.latency.append({"runtime": rk[0], "threads": rk[1], "old_ms": o, "new_ms": n,
                              "ratio": None if ratio is None else round(ratio, 4)})
            if ratio is not None and ratio > max_slowdown:
                a.problems.append(f"{rk[0]} ×{rk[1] or '—'}: median {_num(o)} → {_num(n)} ms (×{ratio:.2f} > "
                                  f"×{max_slowdown:g})")
                a.verdict = a.verdict if a.verdict == "FAIL" else "REGRESSED"
        out.append(a)
    return VersionDiff(new["model"], str(old.get("version")), str(new.get("version")), out, max_slowdown,
                       max_error_growth)


def _parity_by_artifact(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(format, precision) → worst figures over the version's PyTorch edges, and whether all passed."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    edges = ((manifest.get("evidence") or {}).get("parity") or {}).get("edges") or []
    for e in edges:
        if e.get("reference") != "pytorch" or not e.get("format"):
            continue
        row = out.setdefault((e["format"], e["precision"]), {"passed": True})
        row["passed"] = row["passed"] and e.get("passed") is not False
        for m, src in (("max_abs", "max_abs"), ("max_px", "landmarks_max_px"),
                       ("mean_iod_pct", "landmarks_mean_iod_pct")):
            v = e.get(src)
            if isinstance(v, (int, float)) and math.isfinite(v):
                row[m] = max(row.get(m, v), v)
    return out


def _latency_by_artifact(manifest: dict[str, Any]) -> dict[tuple[str, str], dict[tuple[str, Any], float]]:
    out: dict[tuple[str, str], dict[tuple[str, Any], float]] = {}
    for r in ((manifest.get("evidence") or {}).get("latency") or {}).get("records") or []:
        if isinstance(r.get("median_ms"), (int, float)) and r.get("format"):
            out.setdefault((r["format"], r["precision"]), {})[(r["runtime"], r.get("threads"))] = r["median_ms"]
    return out


def _brief(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: row.get(k) for k in ("path", "sha256", "bytes")}


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def _pair(v: dict[str, float | None] | None) -> str:
    return "—" if not v else f"{_num(v['old'])} → {_num(v['new'])}"


def diff_versions(store: Any, old_ref: str, new_ref: str, **limits: float) -> VersionDiff:
    """`MODEL@SPEC` against `MODEL@SPEC` in one store (specs resolve as for pull: 1.2.3, ^1.2, latest…)."""
    from .versions import parse_ref
    (m_old, s_old), (m_new, s_new) = parse_ref(old_ref), parse_ref(new_ref)
    if m_old != m_new:
        raise UsageError(f"diff compares two versions of one model, not {m_old} and {m_new}")
    index = store.read_index()
    v_old, v_new = store.resolve(m_old, s_old, index), store.resolve(m_new, s_new, index)
    old, _ = store.read_manifest(m_old, v_old, index)
    new, _ = store.read_manifest(m_new, v_new, index)
    return diff_manifests(old, new, **limits)
