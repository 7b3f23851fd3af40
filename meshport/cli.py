"""The `meshport` command line: a thin layer over the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from runtime.errors import OutputWriteError, UsageError

from .options import CONVENTIONS, Parser, detectors, formats, is_dir_path, list_of, one_of, precisions, runtimes


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    import modelzoo
    from modelzoo.layers import count_macs, count_params

    rows = []
    for mid in modelzoo.list_models():
        spec = modelzoo.get_spec(mid)
        model = modelzoo.load_model(mid, pretrained=False)
        shape = [1 if d is None else d for d in spec.inputs[0].shape]
        rows.append({"id": mid, "input": spec.inputs[0].describe(), "params": count_params(model),
                     "macs": count_macs(model, torch.zeros(shape)), "pretrained": modelzoo.has_pretrained(mid),
                     "outputs": [o.name for o in spec.outputs], "description": spec.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<22} {'input':<48} {'params':>10} {'MMACs':>8}  weights")
    for r in rows:
        print(f"{r['id']:<22} {r['input']:<48} {r['params']:>10,} {r['macs'] / 1e6:>8.2f}  "
              f"{'imported' if r['pretrained'] else 'random init'}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import SAMPLE_CROP, SAMPLE_PHOTO, predict_images

    for img in args.images:
        if img.lower().endswith(".json") and not Path(img).exists():
            raise UsageError(f"no such image: {img} (--json prints the result on stdout; "
                             f"-o {img} writes it to that file)")
    paths = [Path(p) for p in args.images] or [SAMPLE_CROP if args.crop else SAMPLE_PHOTO]
    many = len(paths) > 1
    overlay_to, json_to, out_dir = _predict_outputs(args.output or [], many)
    frames = predict_images(args.model, paths, crop=args.crop, track=args.track, build=args.build, fmt=args.format,
                            precision=args.precision, runtime=args.runtime, threads=args.threads,
                            cache_dir=args.cache_dir, max_faces=args.max_faces, detector=args.detector)
    data = {"frames": [{"image": f.path, **f.data} for f in frames]} if many else frames[0].data
    written = []
    stems = _unique_stems([Path(f.path).stem for f in frames])
    for f, stem in zip(frames, stems):
        for dest in ([out_dir / f"{stem}.png"] if out_dir else []) + ([overlay_to] if overlay_to else []):
            _atomic_save(dest, lambda p, f=f: f.overlay().save(p, format="PNG"))
            written.append(dest)
        if out_dir:
            dest = out_dir / f"{stem}.json"
            _atomic_save(dest, lambda p, f=f: p.write_text(json.dumps(f.data)))
            written.append(dest)
    if json_to:
        _atomic_save(json_to, lambda p: p.write_text(json.dumps(data)))
        written.append(json_to)
    if args.json:
        print(json.dumps(data))
    elif not args.quiet:
        print("\n".join(line for f in frames for line in f.summary))
        if out_dir:
            print(f"overlays and landmarks: {out_dir}")
        if overlay_to:
            print(f"overlay: {overlay_to}")
        if json_to:
            print(f"landmarks: {json_to}")
    return 0


def _predict_outputs(outputs: list[str], many: bool) -> tuple[Path | None, Path | None, Path | None]:
    """-o values of predict: a .json file (the result), an image file (the overlay), or a directory
    (<stem>.png and <stem>.json per photo)."""
    overlay = result = directory = None
    for o in outputs:
        if is_dir_path(o):
            kind, path = "directory", Path(o)
        elif Path(o).suffix.lower() == ".json":
            kind, path = "JSON file", Path(o)
        else:
            kind, path = "overlay", Path(o)
            if many:
                raise UsageError(f"with several photos, -o {o} must be a directory (end it with /) "
                                 "or a .json file")
        if (kind == "directory" and directory) or (kind == "JSON file" and result) or (kind == "overlay" and overlay):
            raise UsageError(f"-o names a {kind} twice")
        if kind == "directory":
            directory = path
        elif kind == "JSON file":
            result = path
        else:
            overlay = path
    return overlay, result, directory


def _unique_stems(stems: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}-{seen[s]}")
    return out


def _cmd_build(args: argparse.Namespace) -> int:
    from converters.build import build, progress_to_stderr

    model = _build_model(args)
    res = build(model, args.out, formats=args.formats, precisions=args.precisions,
                cache_dir=args.cache_dir, progress=None if args.json else progress_to_stderr,
                require_gpu=not args.allow_gpu_fallback)
    if args.json:
        print(json.dumps({"model": res.model, "build_record": str(res.record_path), "built": res.built,
                          "up_to_date": res.skipped, "seconds": round(res.seconds, 3)}, indent=2))
    else:
        for a in res.artifacts:
            print(f"{a.path:<36} {a.format:<7} {a.precision:<5} {a.bytes / 1e6:7.2f} MB  {a.sha256[:12]}")
        print(f"{len(res.built)} built, {len(res.skipped)} up to date in {res.seconds:.1f} s → {res.record_path}")
    return 0


def _build_model(args: argparse.Namespace) -> str:
    """The model id to build: a zoo (or plugin) id, or the id of the spec file's model, registered
    from the spec file with its --onnx / --torch source."""
    if args.onnx is not None and args.torch is not None:
        raise UsageError("give --onnx FILE or --torch MODULE:FACTORY, not both")
    if args.spec is None:
        if args.onnx is not None or args.torch is not None:
            raise UsageError(f"{'--onnx' if args.onnx is not None else '--torch'} needs --spec FILE: the model's "
                             "input, outputs and tolerances (see README, 'Your own models')")
        if args.model is None:
            raise UsageError("name a zoo model (meshport models lists them) or give --spec FILE")
        return args.model
    from modelzoo.user import load_spec_file, register
    um = register(load_spec_file(args.spec, onnx=args.onnx, torch=args.torch))
    if args.model is not None and args.model != um.spec.id:
        raise UsageError(f"the spec file describes {um.spec.id!r}, not {args.model!r}")
    return um.spec.id


def _cmd_validate(args: argparse.Namespace) -> int:
    from converters.build import progress_to_stderr
    from validation.validate import require_passed, validate

    if args.photos:
        from validation.pipeline import format_photo_parity, validate_photos
        out = validate_photos(args.photos, args.build, args.model,
                              progress=None if args.json else (lambda k: progress_to_stderr(f"photos on {k}")))
        print(json.dumps(out, indent=2) if args.json else format_photo_parity(out) + f"\nphoto parity: {out['path']}")
        return 0
    v = validate(args.model, args.build, progress=None if args.json else progress_to_stderr)
    root = v.root
    if args.json:
        print(json.dumps({"model": v.model, "passed": v.passed, "parity": str(root / "parity.json"),
                          "report": str(root / "report.html"), "edges": len(v.edges),
                          "failed_edges": sum(not e.passed for e in v.edges), "errors": v.errors}, indent=2))
    else:
        _print_parity_summary(v)
        print(f"parity: {root / 'parity.json'}\nreport: {root / 'report.html'}")
    require_passed(v)
    return 0


def _print_parity_summary(v) -> None:
    """Worst error per candidate over all inputs: max abs of any output, and for landmark
    models max px and mean % IOD (faces)."""
    import modelzoo
    from validation.compare import worst_by_candidate

    print(f"{'candidate (vs PyTorch)':<44} {'max abs':>10} {'max px':>10} {'mean %IOD':>10}  verdict")
    for cand, w in worst_by_candidate(v.edges, modelzoo.get_spec(v.model)).items():
        px, iod = (f"{w['max_px']:>10.2e}", f"{w['iod']:>10.4f}") if w["iod"] is not None else (f"{'-':>10}",) * 2
        print(f"{cand:<44} {w['max_abs']:>10.2e} {px} {iod}  {'pass' if w['passed'] else 'FAIL'}")


def _cmd_release(args: argparse.Namespace) -> int:
    from converters.build import progress_to_stderr
    from modelzoo.photo.contract import PIPELINE
    from .release import release

    if args.model == PIPELINE:
        return _release_pipeline(args, progress_to_stderr)
    summary = release(args.model, args.version, store=args.store, out=args.out, key=args.key,
                      aliases=tuple(args.alias or ()), runs=args.runs,
                      say=(lambda m: None) if args.json else progress_to_stderr)
    if args.json:
        print(json.dumps({"model": summary.model, "version": summary.version, "store": summary.store,
                          "published": summary.published, "report": str(summary.report),
                          "public_key": str(summary.public_key) if summary.public_key else None,
                          "artifacts": summary.rows}, indent=2))
        return 0
    print(summary.table())
    state = "published" if summary.published else "already published (identical)"
    print(f"\n{summary.model}@{summary.version} {state} to {summary.store}")
    if summary.public_key:
        print(f"public key: {summary.public_key}")
    print(f"report: {summary.report}")
    return 0


def _release_pipeline(args: argparse.Namespace, say) -> int:
    from .pipeline_release import release_pipeline

    summary = release_pipeline(args.version, landmarks=args.landmarks, store=args.store, out=args.out, key=args.key,
                               aliases=tuple(args.alias or ()), runs=args.runs,
                               say=(lambda m: None) if args.json else say)
    if args.json:
        print(json.dumps({"model": summary.model, "version": summary.version, "store": summary.store,
                          "published": summary.published, "reports": [str(r) for r in summary.reports],
                          "public_key": str(summary.public_key) if summary.public_key else None,
                          "pairs": summary.rows, "not_shipped": summary.excluded}, indent=2))
        return 0
    print(summary.table())
    state = "published" if summary.published else "already published (identical)"
    print(f"\n{summary.model}@{summary.version} {state} to {summary.store}")
    if summary.public_key:
        print(f"public key: {summary.public_key}")
    print("reports: " + ", ".join(str(r) for r in summary.reports))
    return 0


def _atomic_save(path: Path, write: Callable[[Path], object]) -> None:
    from runtime.files import atomic_path
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as exc:
        raise OutputWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="meshport", description="Compile, validate and ship face-mesh models.", epilog=CONVENTIONS,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=version_text(), help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    m = sub.add_parser("models", help="list the zoo: input, parameters, MACs, weights")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=_cmd_models)

    b = sub.add_parser("build", help="convert a zoo model, or your own (--spec with --onnx/--torch); "
                                     "writes DIR/<model>/ and build.json")
    b.add_argument("model", nargs="?", help="zoo model id (with --spec: optional, must match the spec's id)")
    b.add_argument("--spec", type=Path, default=None, metavar="FILE",
                   help="your model's spec file (TOML/YAML/JSON: input, outputs, tolerances, targets, samples)")
    b.add_argument("--onnx", type=Path, default=None, metavar="FILE",
                   help="with --spec: build this ONNX file (it is also the reference, on ONNX Runtime)")
    b.add_argument("--torch", default=None, metavar="MODULE:FACTORY",
                   help="with --spec: build the torch.nn.Module this factory returns (importable module)")
    b.add_argument("-o", "--out", "--output", dest="out", default="build", metavar="DIR",
                   help="output directory (default: build)")
    b.add_argument("--formats", type=list_of("--formats", formats),
                   help="comma-separated formats (default: every enabled one)")
    b.add_argument("--precisions", type=list_of("--precisions", precisions),
                   help="comma-separated precisions (default: every enabled one)")
    b.add_argument("--cache-dir", type=Path, default=None, help="weight cache directory")
    b.add_argument("--allow-gpu-fallback", action="store_true",
                   help="accept TFLite ops the GPU delegate would run on the CPU (default: fail the build)")
    b.add_argument("--json", action="store_true", help="print a JSON summary")
    b.set_defaults(func=_cmd_build)

    va = sub.add_parser("validate", help="parity of every artifact vs PyTorch; parity.json + report.html")
    va.add_argument("model")
    va.add_argument("--build", default="build", help="the build output directory (default: build)")
    va.add_argument("--json", action="store_true", help="print a JSON summary")
    va.add_argument("--photos", nargs="+", metavar="PHOTO",
                    help="instead: run the whole photo pipeline (face_detector + MODEL) of every built format on "
                         "these photos and compare faces and landmarks with PyTorch (photo_parity.json)")
    va.set_defaults(func=_cmd_validate)

    rel = sub.add_parser("release", help="build → validate → bench → publish, with a summary and the report path")
    rel.add_argument("model", help="zoo model id, or face_pipeline: the face detector and --landmarks as one "
                                   "bundle, judged on whole photos")
    rel.add_argument("--landmarks", default="attention_mesh",
                     help="with face_pipeline: the landmark model of the bundle (default: attention_mesh)")
    rel.add_argument("--version", required=True, help="semantic version to publish, e.g. 1.0.0")
    rel.add_argument("--store", default=None, help="store URL (default: the local store `meshport ls` prints)")
    rel.add_argument("-o", "--out", "--output", dest="out", default="out", metavar="DIR",
                     help="build directory (default: out)")
    rel.add_argument("--key", default=None, help="Ed25519 private key (default: OUT/keys, created if absent)")
    rel.add_argument("--alias", action="append", help="extra alias for this version (repeatable)")
    rel.add_argument("--runs", type=int, default=30, help="timed runs per benchmark target (default: 30)")
    rel.add_argument("--json", action="store_true", help="print a JSON summary")
    rel.set_defaults(func=_cmd_release)

    from .bench_cli import add_bench_command
    from .diff_cli import add_diff_command
    from .store_cli import add_store_commands
    add_bench_command(sub)
    add_store_commands(sub)
    add_diff_command(sub)

    pr = sub.add_parser("predict", help="find every face in a photo and its 478 landmarks (or run on a face crop)")
    pr.add_argument("model", help="landmark model id (e.g. attention_mesh), or face_detector for detections only")
    pr.add_argument("images", nargs="*", metavar="PHOTO",
                    help="photo(s) (default: the embedded sample photo; with --crop the sample crop)")
    pr.add_argument("-o", "--out", "--output", dest="output", action="append", metavar="PATH",
                    help="where to write: FILE.json (the result), FILE.png (the overlay; one photo), or a directory "
                         "(ends in / or exists: DIR/<stem>.png and DIR/<stem>.json per photo); repeatable")
    pr.add_argument("--json", action="store_true", help="print the JSON result on stdout "
                    "(several photos: {\"frames\": [...]})")
    pr.add_argument("--track", action="store_true",
                    help="treat the photos as consecutive video frames: follow faces from their landmarks, "
                         "detect only when a face is lost")
    pr.add_argument("--print-json", dest="json", action="store_true", help=argparse.SUPPRESS)
    pr.add_argument("--crop", action="store_true", help="the image is already a face crop: no detector, no ROI")
    pr.add_argument("--build", type=Path, default=None,
                    help="build directory holding face_detector/ and the landmark model (for --format other than pytorch)")
    pr.add_argument("--format", default="pytorch", type=one_of("--format", formats),
                    help="which artifacts run the pipeline: pytorch, onnx, tflite or coreml (default: pytorch)")
    pr.add_argument("--precision", default="fp32", type=one_of("--precision", precisions),
                    help="fp32, fp16 or int8 (default: fp32)")
    pr.add_argument("--runtime", default=None, type=one_of("--runtime", runtimes),
                    help="runner name (default: the first available for the format)")
    pr.add_argument("--detector", default=None, type=one_of("--detector", detectors),
                    help="the zoo face detector that finds faces in photos (default: face_detector)")
    pr.add_argument("--threads", type=int, default=None)
    pr.add_argument("--max-faces", type=int, default=None, help="at most this many faces (default: all)")
    pr.add_argument("--cache-dir", type=Path, default=None,
                    help="weight cache directory (default: $MESHPORT_CACHE or ~/.cache/meshport)")
    pr.add_argument("-q", "--quiet", action="store_true")
    pr.set_defaults(func=_cmd_predict)
    return p


# Commands whose steps report no progress of their own for a while (build and bench have theirs).
_WATCHED = ("validate", "release")


def version_text() -> str:
    """`meshport X.Y.Z`, then the versions of the installed toolchains (read from package metadata:
    nothing is imported)."""
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    from . import __version__
    tools = [f"{n} {v}" for n in ("torch", "onnx", "onnxruntime", "tensorflow", "coremltools") if (v := version(n))]
    return f"meshport {version('meshport') or __version__}" + (f"\n{', '.join(tools)}" if tools else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: one line on stderr for a MeshportError (exit 2, 1 for a parity failure) and
    for Ctrl-C / SIGTERM (exit 130 / 143); toolchain output goes to the log (meshport.logs)."""
    from .logs import quiet_gaps, toolchain_log
    from .signals import MESSAGE, Interrupted, interruptible

    args = build_parser().parse_args(argv)
    watched = args.command in _WATCHED and not getattr(args, "json", False) and not getattr(args, "quiet", False)
    try:
        with interruptible(), toolchain_log(args.command), quiet_gaps(watched):
            return _run(args)
    except Interrupted as exc:
        print(MESSAGE, file=sys.stderr, flush=True)
        return exc.status


def _run(args: argparse.Namespace) -> int:
    from runtime.errors import MeshportError

    try:
        _find_user_models(args)
        return args.func(args)
    except MeshportError as exc:    # anything else is a bug and keeps its traceback
        from validation.compare import ParityError
        text = str(exc).strip()
        if isinstance(exc, ParityError):  # the table of failing outputs is the point: print it whole
            print(f"meshport: error: {text}", file=sys.stderr)
            return 1
        msg = text.splitlines()[0] if text else type(exc).__name__
        print(f"meshport: error: {msg}", file=sys.stderr)
        return 2


def _find_user_models(args: argparse.Namespace) -> None:
    """Commands given a build directory find the models built there from spec files."""
    import modelzoo
    for attr in ("build", "out"):
        value = getattr(args, attr, None)
        if isinstance(value, (str, Path)):
            modelzoo.use_build_dir(value)


if __name__ == "__main__":
    raise SystemExit(main())
