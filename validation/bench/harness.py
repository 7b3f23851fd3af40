"""The latency harness: every built artifact on every available runner — warm-up, N timed runs
(perf_counter around the runtime call only: feeds are converted and outputs checked outside the
timed region), median/p90/min, threads, peak RSS, tool versions → latency.json."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import modelzoo
from runtime.record import ArtifactRecord, BuildRecord
from runtime.runners import Runner, RunnerError, RunnerUnavailable, get_runner, runner_for, runs_on_gpu

from .records import LATENCY_JSON, LatencyRecord, write_latency
from .stats import PeakRSS, host_description, summarize

# What `meshport bench` measures by default; runners that are unavailable here are reported as
# skipped with their reason (Core ML off macOS, CUDA without a CUDA provider).
DEFAULT_RUNTIMES = ("pytorch", "onnxruntime", "tflite", "tflite-ref", "tflite-gpu", "tflite-gpu-f32",
                    "onnxruntime-cuda", "coreml-cpu", "coreml-cpu-gpu", "coreml-all")
# Runtimes whose thread count is a real knob (the others run once, threads recorded as None).
THREADED = frozenset({"pytorch", "onnxruntime", "tflite"})
Progress = Callable[[str, int], None]


class BenchError(RunnerError):
    """The latency harness cannot run what was asked (no build record, nothing to measure, …)."""


@dataclass(frozen=True)
class Job:
    runtime: str
    entry: ArtifactRecord | None    # the artifact; None for eager PyTorch
    threads: int | None

    @property
    def artifact(self) -> str:
        return self.entry.path if self.entry else "pytorch"

    @property
    def label(self) -> str:
        t = f" ×{self.threads}" if self.threads else ""
        return f"{self.runtime}{t} {self.artifact}"


@dataclass
class BenchResult:
    model: str
    records: list[LatencyRecord] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    path: Path | None = None


def tool_versions() -> dict[str, str]:
    from converters.base import tool_versions as converter_tools
    import importlib.metadata
    out = {**converter_tools(), "python": platform.python_version()}
    for extra in ("onnxruntime-gpu", "psutil"):
        try:
            out[extra] = importlib.metadata.version(extra)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def face_feed(spec) -> dict[str, np.ndarray]:
    """The real sample face at the model's input size, NCHW float32 (the same bytes for every
    runtime); an input that is not a square RGB NCHW image (a user's model) gets the seeded input
    over its value range instead."""
    from modelzoo.data import sample_face
    (inp,) = spec.inputs
    shape = tuple(1 if d is None else d for d in inp.shape)
    if inp.layout == "NCHW" and inp.channel_order == "RGB" and len(shape) == 4 and shape[1] == 3 \
            and shape[2] == shape[3]:
        return {inp.name: sample_face(int(shape[-1]))}
    from converters.gate import seeded_input
    return {inp.name: seeded_input(spec)}


def plan(record: BuildRecord, runtimes: Sequence[str] | None = None, threads: Sequence[int] = (1,),
         precisions: Sequence[str] | None = None) -> tuple[list[Job], list[dict]]:
    """Jobs for the artifacts of one build record, and what is skipped (with the reason)."""
    names = list(runtimes) if runtimes else list(DEFAULT_RUNTIMES)
    jobs, skipped = [], []
    for name in names:
        cls = get_runner(name)   # unknown names raise with the list of known ones
        if cls.format == "pytorch":
            entries: list[ArtifactRecord | None] = [None]
        else:
            entries = record.select([cls.format], precisions)
            if not entries:
                skipped.append({"runtime": name, "artifact": None,
                                "reason": f"the build has no {cls.format} artifact"
                                          + (f" in {','.join(precisions)}" if precisions else "")})
                continue
        avail = cls.is_available()
        if not avail.ok:
            for e in entries:
                skipped.append({"runtime": name, "artifact": e.path if e else "pytorch", "reason": avail.reason})
            continue
        for e in entries:
            for t in (threads if name in THREADED else (None,)):
                jobs.append(Job(name, e, t))
    return jobs, skipped


def device_for(runtime: str) -> str:
    if runtime == "onnxruntime-cuda":
        return get_runner(runtime).device()
    if runs_on_gpu(runtime):
        # On a software Vulkan driver (lavapipe) the figure is the host's CPU, labelled so.
        from runtime.litert_gpu import require_available
        gpu = require_available()
        return f"{gpu.describe()} on {host_description()}" if gpu.software else gpu.describe()
    return host_description()


def bench_runner(runner: Runner, feed: dict[str, np.ndarray], runs: int, warmup: int,
                 on_run: Callable[[], None] | None = None) -> tuple[list[float], float | None, str]:
    """(timings in ms, peak RSS in MB over load + runs, its scope) of one runner on one feed."""
    if runs < 1 or warmup < 0:
        raise BenchError(f"need runs ≥ 1 and warmup ≥ 0 (got runs={runs}, warmup={warmup})")
    with PeakRSS() as rss:
        with runner as r:
            for _ in range(warmup):
                r.infer(feed)
                if on_run:
                    on_run()
            times = []
            for _ in range(runs):
                r.infer(feed)
                times.append(r.last_inference_ms)
                if on_run:
                    on_run()
    return times, rss.mb, rss.scope


def bench_build(model_id: str, build_dir: Path | str, runtimes: Sequence[str] | None = None,
                threads: Sequence[int] = (1,), runs: int = 50, warmup: int = 10,
                precisions: Sequence[str] | None = None, progress: Progress | None = None,
                write: bool = True) -> BenchResult:
    """Measure every artifact of a build on every requested runtime; write latency.json beside
    build.json (unless `write` is False) and return the records."""
    modelzoo.use_build_dir(build_dir)
    spec = modelzoo.get_spec(model_id)
    record = BuildRecord.load(build_dir, spec)
    root = record.root
    jobs, skipped = plan(record, runtimes, threads, precisions)
    if spec.config.get("source") == "onnx":     # modelzoo.user: no PyTorch module to measure
        skipped += [{"runtime": j.runtime, "artifact": "pytorch",
                     "reason": "the model was given as ONNX: its reference is the source file on ONNX Runtime "
                               "(the onnx artifact's figures)"} for j in jobs if j.entry is None]
        jobs = [j for j in jobs if j.entry is not None]
    if not jobs:
        raise BenchError(f"nothing to measure for {model_id}: " + "; ".join(
            f"{s['runtime']}: {s['reason']}" for s in skipped) if skipped else f"nothing to measure for {model_id}")
    feed = face_feed(spec)
    versions = tool_versions()
    result = BenchResult(model_id, skipped=skipped)
    torch_model = None
    import torch
    torch_threads = torch.get_num_threads()
    try:
        for job in jobs:
            if progress:
                progress(job.label, 0)
            tick = (lambda: progress(job.label, 1)) if progress else None
            if job.entry is None:
                if torch_model is None:
                    torch_model = modelzoo.load_model(model_id, pretrained=modelzoo.has_pretrained(model_id))
                runner = get_runner("pytorch")(spec, model=torch_model, threads=job.threads)
            else:
                runner = runner_for(job.runtime, spec, root, job.entry, threads=job.threads)
            try:
                times, rss, scope = bench_runner(runner, feed, runs, warmup, tick)
            except RunnerUnavailable as exc:
                result.skipped.append({"runtime": job.runtime, "artifact": job.artifact, "reason": str(exc)})
                continue
            s = summarize(times)
            extra = {"mean_ms": round(s.mean_ms, 4), "max_ms": round(s.max_ms, 4), "input": "sample_face",
                     "timer": "perf_counter", "peak_rss_scope": scope}
            if hasattr(runner, "compute_units"):
                extra["compute_units"] = runner.compute_units
            if runs_on_gpu(job.runtime):
                from runtime.litert_gpu import require_available
                gpu = require_available()
                extra.update(gpu=gpu.to_json(), arithmetic="fp32" if runner.enforce_f32 else "fp16",
                             latency_kind="software rasteriser: not device latency" if gpu.software else "device")
            result.records.append(LatencyRecord(
                model=model_id, artifact=job.artifact, format=job.entry.format if job.entry else "pytorch",
                precision=job.entry.precision if job.entry else "fp32", runtime=job.runtime,
                device=device_for(job.runtime), threads=job.threads, warmup=warmup, runs=runs,
                median_ms=s.median_ms, p90_ms=s.p90_ms, min_ms=s.min_ms, peak_rss_mb=rss, tool_versions=versions,
                extra=extra))
    finally:
        torch.set_num_threads(torch_threads)
    if write:
        result.path = write_latency(root / LATENCY_JSON, model_id, result.records, result.skipped)
    return result


def format_table(records: Sequence[LatencyRecord]) -> str:
    """The summary table `meshport bench` prints."""
    head = f"{'artifact':<34} {'runtime':<16} {'thr':>3} {'median':>9} {'p90':>9} {'min':>9} {'RSS MB':>8}  device"
    lines = [head, "-" * len(head)]
    for r in records:
        p90 = f"{r.p90_ms:9.3f}" if r.p90_ms is not None else f"{'—':>9}"
        rss = f"{r.peak_rss_mb:8.1f}" if r.peak_rss_mb is not None else f"{'—':>8}"
        lines.append(f"{r.artifact:<34} {r.runtime:<16} {r.threads if r.threads else '—':>3} {r.median_ms:9.3f} "
                     f"{p90} {r.min_ms:9.3f} {rss}  {r.device}")
    return "\n".join(lines)
