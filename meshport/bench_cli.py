"""`meshport bench`: latency of every built artifact on every available runtime (bench.json, or the
release evidence latency.json with --update-evidence), the whole photo pipeline per image, and
Android phones through adb. (The paper's Table 1 is an experiment outside the product:
`python -m experiments.table1`.) Wire it in with `add_bench_command(subparsers)`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from runtime.errors import UsageError

from .options import formats, list_of, one_of, output_file, precisions, runtimes

BENCH_JSON = "bench.json"
LOWERING_JSON = "bench_lowering.json"


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _threads(value: str | None) -> list[int]:
    out = []
    for v in _split(value) or ["1"]:
        if not v.isdigit() or int(v) < 1:
            raise UsageError(f"--threads takes positive integers, got {v!r}")
        out.append(int(v))
    return out


class _Bar:
    """Progress on stderr: a tqdm bar on a terminal, else a line every `every` seconds with the
    runs done and the elapsed time; nothing with --json / --quiet."""

    def __init__(self, total: int, enabled: bool, every: float = 2.0):
        self.bar = None
        self.lines = False
        self.total, self.done, self.label, self.every = total, 0, "", every
        self.t0 = self.last = time.perf_counter()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, file=sys.stderr, unit="run", leave=False, dynamic_ncols=True)
        else:
            self.lines = enabled

    def __call__(self, label: str, n: int) -> None:
        if n == 0:
            self.label = label
            if self.bar is not None:
                self.bar.set_description(label[:48])
        self.tick(n)

    def tick(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines:
            now = time.perf_counter()
            if now - self.last >= self.every:
                self.last = now
                print(f"  bench {self.label}: {self.done}/{self.total} runs, {now - self.t0:.0f} s",
                      file=sys.stderr, flush=True)

    def say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(f"  {msg}", file=sys.stderr)
        elif self.lines:
            print(f"  {msg}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _destination(args: argparse.Namespace, root: Path) -> tuple[Path, bool]:
    """Where the records go, and whether that is the release evidence (latency.json, merged)."""
    from validation.bench.records import LATENCY_JSON
    if args.update_evidence:
        if args.output:
            raise UsageError("--update-evidence writes the build's latency.json; it takes no -o")
        return root / LATENCY_JSON, True
    return output_file(args.output, BENCH_JSON, root), False


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.warmup < 0:
        raise UsageError(f"--runs must be ≥ 1 and --warmup ≥ 0 (got {args.runs}, {args.warmup})")
    if args.photo is not None:
        return _photo(args)
    if not args.model:
        raise UsageError("bench needs a MODEL")
    if args.lowering:
        return _lowering(args)
    if args.android:
        return _android(args)
    from validation.bench import bench_build, format_table, plan
    from validation.bench.records import write_latency

    threads = _threads(args.threads)
    runtimes, precisions = args.runtimes, args.precisions
    record = _record(args)
    dest, evidence = _destination(args, record.root)
    jobs, _ = plan(record, runtimes, threads, precisions)
    bar = _Bar(len(jobs) * (args.runs + args.warmup), not (args.json or args.quiet))
    try:
        res = bench_build(args.model, args.build, runtimes=runtimes, threads=threads, runs=args.runs,
                          warmup=args.warmup, precisions=precisions, progress=bar, write=False)
    finally:
        bar.close()
    res.path = write_latency(dest, args.model, res.records, res.skipped, merge=evidence)
    if args.json:
        print(json.dumps({"model": res.model, "latency": str(res.path), "records": [r.to_json() for r in res.records],
                          "skipped": res.skipped, "evidence": evidence}, indent=2))
        return 0
    print(format_table(res.records))
    for s in res.skipped:
        print(f"skipped {s['runtime']} ({s['artifact'] or '—'}): {s['reason']}")
    print(f"{len(res.records)} records → {res.path}" + ("" if evidence else
          " (the release evidence latency.json is unchanged; --update-evidence replaces it)"))
    return 0


def _lowering(args: argparse.Namespace) -> int:
    """--lowering compare: the fused GridSample fast path vs the general lowering on the same
    ONNX graph (conversion time and TFLite CPU latency, interleaved) → bench_lowering.json."""
    from runtime.files import write_json_atomic
    from validation.bench.lowering import compare_lowerings

    if args.rounds < 1:
        raise UsageError(f"--rounds must be ≥ 1 (got {args.rounds})")
    threads = _threads(args.threads)
    if len(threads) != 1:
        raise UsageError("--lowering compare runs at one thread setting; give a single --threads value")
    root = Path(args.build) / args.model
    onnx_path = root / f"{args.model}.onnx"
    quiet = args.json or args.quiet
    out = compare_lowerings(args.model, onnx_path if onnx_path.is_file() else None, rounds=args.rounds,
                            runs=args.runs, warmup=args.warmup, threads=threads[0],
                            progress=None if quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)))
    dest = output_file(args.output, LOWERING_JSON, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(dest, out)
    if args.json:
        print(json.dumps({**out, "path": str(dest)}, indent=2))
        return 0
    for name, rec in out["lowerings"].items():
        lat = rec["latency_ms"]
        print(f"{name:<8} convert median {rec['convert_median_s']:8.2f} s   latency median {lat['median_ms']:8.3f} ms "
              f"(p90 {lat['p90_ms']:.3f})   {rec['ops']} ops   GPU-clean {'yes' if rec['gpu_clean'] else 'no'}")
    r = out["ratio_general_over_fused"]
    print(f"general/fused: convert ×{r['convert_median']:.3f}, latency ×{r['latency_median']:.3f}; parity "
          f"{'passed' if out['parity']['passed'] else 'FAILED'} → {dest}")
    return 0


def _record(args: argparse.Namespace):
    import modelzoo
    from runtime.record import BuildRecord
    return BuildRecord.load(args.build, modelzoo.get_spec(args.model))


def _android(args: argparse.Namespace) -> int:
    from validation.bench import format_table, tool_versions
    from validation.bench.android import AndroidDevice, default_variants
    from validation.bench.records import write_latency

    record = _record(args)
    root = record.root
    dest, evidence = _destination(args, root)
    entries = record.select(["tflite"], args.precisions)
    if not entries:
        raise UsageError(f"the build of {args.model} has no .tflite artifact to run on the phone")
    device = AndroidDevice(args.android, adb=args.adb, serial=args.serial)
    variants = default_variants(_threads(args.threads))
    records = []
    for e in entries:
        if not args.json:
            print(f"  {e.path} on {device.serial} ({len(variants)} variants) …", file=sys.stderr)
        records += device.bench_artifact(args.model, root, e, variants, args.runs, args.warmup, tool_versions(),
                                         op_profiling=args.op_profiling)
    path = write_latency(dest, args.model, records, merge=evidence)
    if args.json:
        print(json.dumps({"model": args.model, "latency": str(path), "records": [r.to_json() for r in records]},
                         indent=2))
    else:
        print(format_table(records))
        print(f"{len(records)} records → {path}")
    return 0


def _photo(args: argparse.Namespace) -> int:
    from modelzoo.data import SAMPLE_PHOTO
    from validation.bench.photo import bench_photo, format_photo

    threads = _threads(args.threads)
    if len(threads) != 1:
        raise UsageError("--photo runs at one thread setting; give a single --threads value")
    precisions = args.precisions or ["fp32"]
    runtimes = args.runtimes
    if len(precisions) != 1 or (runtimes and len(runtimes) != 1):
        raise UsageError("--photo times one pipeline: give one --precisions value and at most one --runtimes value")
    bar = _Bar(args.runs + args.warmup, not (args.json or args.quiet))
    try:
        out = bench_photo(args.photo or SAMPLE_PHOTO, args.build, fmt=args.format, precision=precisions[0],
                          runtime=runtimes[0] if runtimes else None, threads=threads[0], runs=args.runs,
                          warmup=args.warmup, landmark_model=args.model or "attention_mesh", progress=bar.tick)
    finally:
        bar.close()
    if args.output:
        from runtime.files import write_json_atomic
        write_json_atomic(output_file(args.output, "bench_photo.json"), out)
    print(json.dumps(out, indent=2) if args.json else format_photo(out))
    return 0


def add_bench_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `bench` to the `meshport` sub-commands (as build_parser() adds `build`)."""
    p = subparsers.add_parser("bench", help="latency of built artifacts per runtime; writes bench.json",
                              description="Warm-up, N timed runs (perf_counter), median/p90/min, peak RSS and tool "
                                          "versions per artifact × runtime × threads → DIR/<model>/bench.json (or "
                                          "-o); --update-evidence replaces the release evidence "
                                          "DIR/<model>/latency.json instead. --android drives a phone through adb "
                                          "with TFLite's benchmark_model.")
    p.add_argument("model", nargs="?", help="zoo model id (as built with `meshport build MODEL --out DIR`)")
    p.add_argument("--build", default="build", help="the build directory (the --out of `build`; default: build)")
    p.add_argument("--runtimes", "--runtime", type=list_of("--runtimes", runtimes), help="comma-separated runners (default: pytorch, onnxruntime, tflite, tflite-ref, "
                                      "and tflite-gpu / tflite-gpu-f32 / onnxruntime-cuda / coreml-* where "
                                      "available)")
    p.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2 (default: 1)")
    p.add_argument("--precisions", type=list_of("--precisions", precisions),
                   help="comma-separated precisions to measure (default: all built)")
    p.add_argument("-o", "--out", "--output", dest="output", metavar="PATH",
                   help="write the records here (a directory: PATH/bench.json; default: DIR/<model>/bench.json; "
                        "with --photo: PATH/bench_photo.json)")
    p.add_argument("--update-evidence", action="store_true",
                   help="write the records into the build's latency.json (the release evidence), merged with "
                        "the records already there")
    p.add_argument("--runs", type=int, default=50, help="timed runs (default: 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs (default: 10)")
    p.add_argument("--android", metavar="BENCHMARK_MODEL", type=Path,
                   help="run the .tflite artifacts on an Android phone with this benchmark_model binary")
    p.add_argument("--adb", help="adb binary (default: $ADB or adb on PATH)")
    p.add_argument("--serial", help="adb device serial (default: the only attached device)")
    p.add_argument("--op-profiling", action="store_true", help="with --android: benchmark_model's per-op profile")
    p.add_argument("--photo", nargs="?", const="", default=None, metavar="PHOTO",
                   help="time the whole photo pipeline (detector → landmarks) per image on PHOTO (default: the "
                        "sample photo), with the face_detector and MODEL artifacts of --build")
    p.add_argument("--format", default="tflite", type=one_of("--format", formats),
                   help="with --photo: which artifacts run the pipeline (default: tflite)")
    p.add_argument("--lowering", type=one_of("--lowering", ("compare",)),
                   help="compare: MODEL's GridSample lowerings side by side (fused fast path vs the general "
                        "lowering on the same ONNX graph: onnx→tflite time over --rounds and TFLite CPU latency "
                        "over --runs, interleaved; op counts, GPU check, parity) → DIR/<model>/bench_lowering.json "
                        "(or -o); uses DIR/<model>/<model>.onnx when built, else exports it")
    p.add_argument("--rounds", type=int, default=3, help="with --lowering: conversions per lowering (default: 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)
    return p
