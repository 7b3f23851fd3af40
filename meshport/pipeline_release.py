"""`meshport release face_pipeline`: the detector and a landmark model released as one bundle.

Each network goes through the single-model recipe (build → validate → bench); then the whole
photo pipeline of every built target runs on the release photos against the PyTorch pipeline
(validation.pipeline.validate_photos), and the bundle ships the targets that passed, with the
pipeline block that pins the processing rules, under one signature. A target that fails on a
photo is left out and named, never shipped."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .release import Say, release_key

# The photos a pipeline release is judged on: the sample photo, and the second sample face taken
# as a photo (the detector's ROI then reaches past the image: a border case of the crop).
def release_photos() -> list[Path]:
    from modelzoo.data import SAMPLE_FACES, SAMPLE_PHOTO
    return [Path(SAMPLE_PHOTO), Path(SAMPLE_FACES[1])]


@dataclass
class PipelineSummary:
    model: str
    version: str
    store: str
    build_dir: Path
    reports: list[Path]
    public_key: Path | None
    published: bool
    rows: list[dict] = field(default_factory=list)      # one per shipped pair
    excluded: list[dict] = field(default_factory=list)

    def table(self) -> str:
        head = f"{'target':<14} {'detector artifact':<44} {'landmark artifact':<46} {'worst %IOD':>10} {'bound':>7}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r['target']:<14} {r['detector']:<44} {r['landmarks']:<46} "
                         f"{r['worst_mean_iod_pct']:>10.4f} {r['bound']:>7.3f}")
        lines += [f"not shipped: {x['target']} — {x['reason']}" for x in self.excluded]
        return "\n".join(lines)


def release_pipeline(version: str, *, landmarks: str = "attention_mesh", detector: str = "face_detector",
                     store: str | None = None, out: Path | str = "out", key: Path | str | None = None,
                     aliases: tuple[str, ...] = (), runs: int = 30, photos: list[Path] | None = None,
                     say: Say = lambda m: None) -> PipelineSummary:
    import modelzoo
    from artifacts import Store
    from artifacts.bundle import prepare_pipeline
    from converters.build import build
    from modelzoo.photo.contract import PIPELINE, pipeline_contract
    from modelzoo.photo.networks import DETECTOR
    from runtime.errors import UsageError
    from validation.bench import bench_build
    from validation.compare import ParityError
    from validation.pipeline import validate_photos
    from validation.validate import require_passed, validate

    if detector != DETECTOR:
        raise UsageError(f"the whole-photo parity of a pipeline release runs {DETECTOR}; "
                         f"{detector} cannot be released in a bundle yet")
    out = Path(out)
    reports = []
    for i, model in enumerate((detector, landmarks), 1):
        say(f"[{i}/4] build, validate, bench {model}")
        build(model, out, progress=lambda m: say(f"      {m}"))
        v = validate(model, out, progress=lambda m: say(f"      {m}"))
        require_passed(v)
        bench_build(model, out, runs=runs, warmup=max(3, runs // 10))
        reports.append(v.root / "report.html")
    say(f"[3/4] whole-photo parity of every target ({detector} + {landmarks} vs PyTorch)")
    try:
        photo = validate_photos(photos or release_photos(), out, landmarks, progress=lambda k: say(f"      {k}"))
    except ParityError as exc:                  # the failing targets are left out of the bundle
        photo = exc.report
    key, public_key = release_key(out, key)
    say(f"[4/4] publish {PIPELINE}@{version}")
    block = pipeline_contract(modelzoo.get_spec(detector), modelzoo.get_spec(landmarks))
    manifest, files = prepare_pipeline(PIPELINE, {"detector": (detector, out), "landmarks": (landmarks, out)},
                                       version, block, photo, aliases=aliases, progress=lambda m: None)
    st = Store(store)
    published = not _same_release(st, PIPELINE, version, manifest)
    if published:
        st.publish_prepared(PIPELINE, version, manifest, files, key=key, aliases=aliases)
    else:
        say(f"      {PIPELINE}@{version} is already in {st.url} with identical artifacts")
    worst = {}
    for r in photo["rows"]:
        w = worst.setdefault(r["candidate"], [0.0, r["bound_mean_iod_pct"]])
        w[0] = max(w[0], r.get("worst_mean_iod_pct") or 0.0)
    paths = {(a["component"], a["format"], a["precision"]): a["path"] for a in manifest["artifacts"]}
    rows = []
    for target, pair in sorted(manifest["pipeline"]["pairing"].items()):
        (df, dp), (lf, lp) = pair["detector"].split("/"), pair["landmarks"].split("/")
        rows.append({"target": target, "detector": paths[(detector, df, dp)], "landmarks": paths[(landmarks, lf, lp)],
                     "worst_mean_iod_pct": worst[target][0], "bound": worst[target][1]})
    return PipelineSummary(PIPELINE, version, st.url, out, reports, public_key, published, rows,
                           manifest["pipeline"]["excluded"])


def _same_release(store, name: str, version: str, manifest: dict) -> bool:
    """True when name@version exists with exactly these artifacts (a re-run is then a no-op);
    a different bundle under the same version is left for publish to refuse."""
    from artifacts.errors import NotFoundError
    try:
        shipped, _ = store.read_manifest(name, version)
    except NotFoundError:
        return False
    return ({a["path"]: a["sha256"] for a in shipped.get("artifacts", [])}
            == {a["path"]: a["sha256"] for a in manifest["artifacts"]})
