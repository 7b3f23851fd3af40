"""`meshport release`: the whole recipe — build → validate → bench → publish — with each step's
evidence feeding the next (the store refuses a build without a passing parity report)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runtime.record import BuildRecord

Say = Callable[[str], None]
PRIVATE_KEY, PUBLIC_KEY = "meshport-signing.pem", "meshport-signing.pub.pem"


@dataclass
class ReleaseSummary:
    model: str
    version: str
    store: str
    build_dir: Path
    report: Path
    public_key: Path | None
    published: bool                      # False: this exact release was already in the store
    rows: list[dict] = field(default_factory=list)

    def table(self) -> str:
        head = (f"{'artifact':<34} {'fmt':<7} {'prec':<5} {'MB':>6} {'max abs':>9} {'max px':>9} {'%IOD':>7} "
                f"{'GPU px':>8} {'median ms':>10}  runtime")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            ab = "" if r.get("max_abs") is None else f"{r['max_abs']:.2e}"
            px = "" if r["max_px"] is None or r["iod"] is None else f"{r['max_px']:.2e}"
            iod = "" if r["iod"] is None else f"{r['iod']:.3f}"
            ms = "" if r["median_ms"] is None else f"{r['median_ms']:.2f}"
            gp = "" if r.get("gpu_max_px") is None or r["iod"] is None else f"{r['gpu_max_px']:.2e}"
            lines.append(f"{r['path']:<34} {r['format']:<7} {r['precision']:<5} {r['mb']:>6.2f} {ab:>9} {px:>9} {iod:>7} "
                         f"{gp:>8} {ms:>10}  {r['runtime'] or ''}")
        return "\n".join(lines)


def release(model_id: str, version: str, store: str | None = None, out: Path | str = "out",
            key: Path | str | None = None, aliases: tuple[str, ...] = (), runs: int = 30,
            say: Say = lambda m: None) -> ReleaseSummary:
    from artifacts import Store, release_publish
    from converters.build import build
    from validation.bench import bench_build
    from validation.validate import require_passed, validate

    out = Path(out)
    say(f"[1/4] build {model_id}")
    built = build(model_id, out, progress=lambda m: say(f"      {m}"))
    say(f"[2/4] validate {model_id}")
    v = validate(model_id, out, progress=lambda m: say(f"      {m}"))
    require_passed(v)
    say(f"[3/4] bench {model_id}")
    bench = bench_build(model_id, out, runs=runs, warmup=max(3, runs // 10))
    key, public_key = release_key(out, key)
    if public_key is not None:
        from artifacts import trust
        say(f"      signing key {trust.public_key_id(public_key)} ({public_key}) is trusted for pull in {trust.trust_dir()}")
    say(f"[4/4] publish {model_id}@{version}")
    st = Store(store)
    published = True
    if _already_released(st, model_id, version, built.record_path):
        published = False
        say(f"      {model_id}@{version} is already in {st.url} with identical artifacts")
    else:
        release_publish(model_id, out, version, store, key=key, aliases=aliases)
    return ReleaseSummary(model_id, version, st.url, built.root, v.root / "report.html", public_key, published,
                          _rows(built.record_path, v, bench.records))


def release_key(out: Path, key: Path | str | None) -> tuple[Path | str, Path | None]:
    """(private key, its public key if made here): a local release without `key` is signed with a
    project key kept beside the build (OUT/keys), created on first use and added to the user's
    trusted keys (it is the user's own key), so a key-less `pull` of the release verifies."""
    if key is not None:
        return key, None
    from artifacts import keygen, trust
    key_dir = Path(out) / "keys"
    private, public = key_dir / PRIVATE_KEY, key_dir / PUBLIC_KEY
    if not private.exists():
        private, public = keygen(key_dir)
    trust.add(public)
    return private, public


def _already_released(store, model: str, version: str, record_path: Path) -> bool:
    """True when `model@version` exists with exactly this build's artifacts (re-running a release
    is then a no-op); False when it does not exist. A different build under the same version is
    left for publish to refuse."""
    from artifacts.errors import NotFoundError
    try:
        manifest, _ = store.read_manifest(model, version)
    except NotFoundError:
        return False
    built = {a.path: a.sha256 for a in BuildRecord.read(record_path).artifacts}
    shipped = {a["path"]: a.get("sha256") for a in manifest.get("artifacts", [])}
    return built == shipped


def _rows(record_path: Path, v, records) -> list[dict]:
    import modelzoo
    from validation.compare import worst_by_candidate
    from runtime.runners import runs_on_gpu

    worst: dict[str, dict] = {}   # per artifact, over its runners in the artifact's own arithmetic
    gpu: dict[str, float] = {}    # per artifact: worst max px on the GPU accelerator (either arithmetic)
    imposed = {e.candidate for e in v.edges if e.compute is not None}
    for cand, w in worst_by_candidate(v.edges, modelzoo.get_spec(v.model)).items():
        path, runner = cand.split("@")
        if runs_on_gpu(runner):
            gpu[path] = max(gpu.get(path, 0.0), w["max_px"])
        if cand in imposed:
            continue
        agg = worst.setdefault(path, {"max_abs": 0.0, "max_px": 0.0, "iod": None})
        agg["max_abs"] = max(agg["max_abs"], w["max_abs"])
        agg["max_px"] = max(agg["max_px"], w["max_px"])
        if w["iod"] is not None:
            agg["iod"] = max(agg["iod"] or 0.0, w["iod"])
    fastest: dict[str, tuple[float, str]] = {}
    for r in records:
        if r.threads in (1, None) and r.median_ms is not None:
            if r.artifact not in fastest or r.median_ms < fastest[r.artifact][0]:
                fastest[r.artifact] = (r.median_ms, r.runtime)
    rows = []
    for a in BuildRecord.read(record_path).artifacts:
        w = worst.get(a.path, {"max_abs": None, "max_px": None, "iod": None})
        ms, rt = fastest.get(a.path, (None, None))
        rows.append({"path": a.path, "format": a.format, "precision": a.precision, "mb": a.bytes / 1e6,
                     "max_abs": w["max_abs"], "max_px": w["max_px"], "iod": w["iod"], "median_ms": ms,
                     "runtime": rt, "gpu_max_px": gpu.get(a.path)})
    return rows
