"""Android targets through `adb`: push a .tflite and TFLite's `benchmark_model` binary (the user
gives its path) to the phone, run it on the CPU and with `--use_gpu=true`, parse its output and
record the result like any other target.

`benchmark_model` prints (tflite/tools/benchmark/benchmark_model.cc, stats from Stat::OutputToStream):
    Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=50 first=119614 curr=115889 min=111842 max=119614 avg=115246 std=1329 [p5=… median=… p95=…]
    Inference timings in us: Init: …, First inference: …, Warmup (avg): …, Inference (avg): …
older releases "Average inference timings in us: Warmup: …, Init: …, Inference: …", newer ones
prefix lines with "INFO: "; with --enable_op_profiling=true the profiler's per-op tables and
"Timings (microseconds): count=…" follow. All times are microseconds."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from runtime.record import ArtifactRecord
from runtime.runners import RunnerError

from .records import LatencyRecord

REMOTE_DIR = "/data/local/tmp/meshport"


class AndroidError(RunnerError):
    """Driving an Android device failed."""


class AdbNotFoundError(AndroidError):
    """No adb binary (not on PATH, not at the given path)."""


class BenchmarkBinaryNotFoundError(AndroidError):
    """The benchmark_model binary the user named does not exist."""


class NoDeviceError(AndroidError):
    """adb sees no usable device (none attached, unauthorized, offline, or several and no serial)."""


class BenchmarkOutputError(AndroidError):
    """benchmark_model failed or printed no timings we can read."""


# -- parsing -----------------------------------------------------------------------------------

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STAT = re.compile(r"count=(\d+)((?:\s+\w+=" + _NUM + r")*)")
_KV = re.compile(r"(\w+)=(" + _NUM + r")")
_RUN_HEADER = re.compile(r"Running benchmark for at least (\d+) iterations")
_TIMINGS = re.compile(r"inference timings in us:\s*(.*)", re.IGNORECASE)
_OP_ROW = re.compile(r"^\s*([A-Za-z_0-9]+)\s+(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM
                     + r")%\s+(" + _NUM + r")%\s+(" + _NUM + r")\s+(\d+)\s+\[(.*)\]\s*$")
_TYPE_ROW = re.compile(r"^\s*([A-Za-z_0-9]+)\s+(\d+)\s+(" + _NUM + r")\s+(" + _NUM + r")%\s+(" + _NUM + r")%\s+("
                       + _NUM + r")\s+(\d+)\s*$")


@dataclass
class RunStats:
    """One `count=… first=… …` line (microseconds)."""
    count: int
    values: dict[str, float]

    def get(self, key: str) -> float | None:
        return self.values.get(key)


@dataclass
class BenchmarkModelOutput:
    """What one benchmark_model run reported (times in microseconds)."""

    inference: RunStats                       # the timed (regular) runs
    warmup: RunStats | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    peak_memory_mb: float | None = None
    delegation: str | None = None             # e.g. "GPU: complete", "GPU: 58 of 60 nodes"
    op_profile: list[dict] = field(default_factory=list)      # Run Order rows (avg ms per op)
    op_type_summary: list[dict] = field(default_factory=list)  # Summary by node type rows

    @property
    def median_ms(self) -> float:
        v = self.inference.get("median")
        return (v if v is not None else self.inference_mean_us) / 1e3

    @property
    def inference_mean_us(self) -> float:
        v = self.inference.get("avg")
        if v is None:
            v = self.inference_avg_us if self.inference_avg_us is not None else self.inference.get("curr")
        return float(v)

    @property
    def min_ms(self) -> float:
        v = self.inference.get("min")
        return (v if v is not None else self.inference.get("curr")) / 1e3


def _strip_prefix(line: str) -> str:
    return re.sub(r"^\s*(?:INFO|VERBOSE|WARNING|ERROR):\s?", "", line)


def _stat(line: str) -> RunStats | None:
    m = _STAT.search(line)
    if not m or not line.lstrip().startswith(("count=", "Timings (microseconds): count=")):
        return None
    vals = {k: float(v) for k, v in _KV.findall(m.group(2))}
    return RunStats(int(m.group(1)), vals)


def parse_benchmark_output(text: str) -> BenchmarkModelOutput:
    """Parse benchmark_model's stdout/stderr (any release since 2019; see the module docstring)."""
    lines = [_strip_prefix(ln) for ln in text.splitlines()]
    failure = next((ln for ln in lines if "Benchmarking failed" in ln or "Failed to allocate tensors" in ln
                    or "Failed to apply" in ln), None)
    blocks: list[RunStats] = []
    pending = False
    profiler_total = None
    summary: dict[str, str] = {}
    out_ops, out_types, section = [], [], None
    peak = None
    delegation = None
    for ln in lines:
        s = ln.strip()
        if _RUN_HEADER.search(s):
            pending = True
            continue
        if s.startswith("Timings (microseconds):"):
            profiler_total = _stat(s[len("Timings (microseconds):"):].strip()) or profiler_total
            continue
        if pending and s.startswith("count="):
            st = _stat(s)
            if st:
                blocks.append(st)
                pending = False
            continue
        m = _TIMINGS.search(s)
        if m:
            for part in m.group(1).split(","):
                if ":" in part:
                    k, v = part.split(":", 1)
                    summary[k.strip()] = v.strip()
            continue
        if s.startswith("=====") and "Run Order" in s:
            section = "order"
            continue
        if s.startswith("=====") and "Summary by node type" in s:
            section = "types"
            continue
        if s.startswith("====="):
            section = None
            continue
        if section == "order":
            m = _OP_ROW.match(ln)
            if m:
                out_ops.append({"type": m.group(1), "start_ms": float(m.group(2)), "first_ms": float(m.group(3)),
                                "avg_ms": float(m.group(4)), "pct": float(m.group(5)), "name": m.group(9)})
        elif section == "types":
            m = _TYPE_ROW.match(ln)
            if m:
                out_types.append({"type": m.group(1), "count": int(m.group(2)), "avg_ms": float(m.group(3)),
                                  "pct": float(m.group(4))})
        m = re.search(r"Peak memory footprint \(MB\): init=(" + _NUM + r") overall=(" + _NUM + r")", s) \
            or re.search(r"Memory footprint delta from the start of the tool \(MB\): init=(" + _NUM
                         + r") overall=(" + _NUM + r")", s)
        if m:
            peak = float(m.group(2))
        m = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: (" + _NUM + ")", s)
        if m:
            peak = float(m.group(1))
        if "Explicitly applied GPU delegate, and the model graph will be completely executed" in s:
            delegation = "GPU: complete"
        m = re.search(r"(\d+) operations will run on the GPU, and the remaining (\d+)", s)
        if m:
            delegation = f"GPU: {m.group(1)} ops on GPU, {m.group(2)} on CPU"
        m = re.search(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)", s)
        if m and delegation is None:
            delegation = f"{m.group(3)}: {m.group(1)} of {m.group(2)} nodes"

    def us(key: str) -> float | None:
        v = summary.get(key)
        try:
            return float(v) if v is not None else None
        except ValueError:
            return None

    if blocks:
        inference = blocks[-1]
        warm = blocks[-2] if len(blocks) > 1 else None
    elif profiler_total:
        inference, warm = profiler_total, None
    else:
        reason = failure or "no timing lines (count=… / Inference timings in us) in its output"
        raise BenchmarkOutputError(f"benchmark_model: {reason}")
    if failure and not summary:
        raise BenchmarkOutputError(f"benchmark_model: {failure}")
    avg = us("Inference (avg)") if "Inference (avg)" in summary else us("Inference")
    return BenchmarkModelOutput(
        inference=inference, warmup=warm, init_us=us("Init"), first_inference_us=us("First inference"),
        warmup_avg_us=us("Warmup (avg)") if "Warmup (avg)" in summary else us("Warmup"),
        inference_avg_us=avg, peak_memory_mb=peak, delegation=delegation, op_profile=out_ops,
        op_type_summary=out_types)


def parse_adb_devices(text: str) -> list[tuple[str, str]]:
    """[(serial, state)] from `adb devices` (state: device, unauthorized, offline, …)."""
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln.startswith(("List of devices", "*")):
            continue
        parts = ln.split()
        if len(parts) >= 2:
            out.append((parts[0], parts[1]))
    return out


# -- driving a phone ---------------------------------------------------------------------------

Run = Callable[[Sequence[str]], subprocess.CompletedProcess]


def _default_run(cmd: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=900)


@dataclass(frozen=True)
class Variant:
    """One benchmark_model configuration: a runtime name and its flags."""
    runtime: str
    use_gpu: bool
    threads: int | None


def default_variants(threads: Sequence[int] = (1,)) -> list[Variant]:
    return [Variant("android-tflite-cpu", False, t) for t in threads] + [Variant("android-tflite-gpu", True, None)]


class AndroidDevice:
    """One phone behind adb. `adb` defaults to $ADB, then `adb` on PATH; `serial` to the only
    attached device."""

    def __init__(self, benchmark_binary: Path | str, adb: str | None = None, serial: str | None = None,
                 remote_dir: str = REMOTE_DIR, run: Run | None = None):
        self.benchmark_binary = Path(benchmark_binary)
        self.adb = self._find_adb(adb)
        if not self.benchmark_binary.is_file():
            raise BenchmarkBinaryNotFoundError(
                f"benchmark_model binary not found: {self.benchmark_binary} (download the android_aarch64 "
                "benchmark_model from the LiteRT/TFLite releases or build //tflite/tools/benchmark:benchmark_model)")
        self.remote_dir = remote_dir.rstrip("/")
        self._run = run or _default_run
        self.serial = serial or self._only_device()
        self._check_serial()

    @staticmethod
    def _find_adb(adb: str | None) -> str:
        cand = adb or os.environ.get("ADB") or "adb"
        path = cand if os.path.sep in cand and Path(cand).is_file() else shutil.which(cand)
        if not path:
            raise AdbNotFoundError(f"adb not found ({cand!r} is not a file nor on PATH); install Android platform "
                                   "tools or pass --adb PATH")
        return path

    def _adb(self, *args: str, serial: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.adb, *(["-s", self.serial] if serial else []), *args]
        try:
            proc = self._run(cmd)
        except (OSError, subprocess.SubprocessError) as exc:
            raise AndroidError(f"{' '.join(cmd)} failed: {exc}") from exc
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise AndroidError(f"{' '.join(cmd)} exited {proc.returncode}: {msg[-1] if msg else ''}")
        return proc

    def devices(self) -> list[tuple[str, str]]:
        return parse_adb_devices(self._adb("devices", serial=False).stdout)

    def _only_device(self) -> str:
        ready = [s for s, state in self.devices() if state == "device"]
        if not ready:
            raise NoDeviceError("adb sees no ready device (attach a phone with USB debugging enabled and "
                                "authorized, or start an emulator)")
        if len(ready) > 1:
            raise NoDeviceError(f"several devices attached ({', '.join(ready)}); choose one with --serial")
        return ready[0]

    def _check_serial(self) -> None:
        states = dict(self.devices())
        if self.serial not in states:
            raise NoDeviceError(f"device {self.serial} is not attached (adb sees: {', '.join(states) or 'none'})")
        if states[self.serial] != "device":
            raise NoDeviceError(f"device {self.serial} is {states[self.serial]}")

    def model_name(self) -> str:
        return self._adb("shell", "getprop", "ro.product.model").stdout.strip() or self.serial

    def remote(self, name: str) -> str:
        return f"{self.remote_dir}/{name}"

    def benchmark_command(self, graph: str, variant: Variant, runs: int, warmup: int,
                          op_profiling: bool = False) -> list[str]:
        """The adb command that runs benchmark_model on `graph` (a path on the device). min_secs and
        warmup_min_secs are 0 so exactly `runs` / `warmup` iterations run."""
        flags = [f"--graph={graph}", f"--num_runs={runs}", f"--warmup_runs={warmup}", "--min_secs=0",
                 "--warmup_min_secs=0"]
        if variant.use_gpu:
            flags.append("--use_gpu=true")
        if variant.threads:
            flags.append(f"--num_threads={variant.threads}")
        if op_profiling:
            flags.append("--enable_op_profiling=true")
        return [self.adb, "-s", self.serial, "shell", self.remote("benchmark_model"), *flags]

    def push(self, local: Path, name: str) -> str:
        self._adb("shell", "mkdir", "-p", self.remote_dir)
        dest = self.remote(name)
        self._adb("push", str(local), dest)
        return dest

    def run_benchmark(self, graph: str, variant: Variant, runs: int, warmup: int,
                      op_profiling: bool = False) -> tuple[BenchmarkModelOutput, str]:
        cmd = self.benchmark_command(graph, variant, runs, warmup, op_profiling)
        try:
            proc = self._run(cmd)
        except (OSError, subprocess.SubprocessError) as exc:
            raise AndroidError(f"benchmark_model did not run: {exc}") from exc
        text = (proc.stdout or "") + "\n" + (proc.stderr or "")
        if proc.returncode != 0:
            try:
                parse_benchmark_output(text)
            except BenchmarkOutputError as exc:
                raise BenchmarkOutputError(f"{exc} (exit {proc.returncode})") from exc
            raise BenchmarkOutputError(f"benchmark_model exited {proc.returncode}")
        return parse_benchmark_output(text), text

    def bench_artifact(self, model: str, root: Path, entry: ArtifactRecord, variants: Sequence[Variant], runs: int,
                       warmup: int, tool_versions: dict[str, str], op_profiling: bool = False) -> list[LatencyRecord]:
        """Push one .tflite artifact and the binary, run every variant, return records."""
        if entry.format != "tflite":
            raise AndroidError(f"benchmark_model runs .tflite artifacts, not {entry.format} ({entry.path})")
        local = Path(root) / entry.path
        if not local.exists():
            raise AndroidError(f"artifact not found: {local}")
        binary = self.push(self.benchmark_binary, "benchmark_model")
        self._adb("shell", "chmod", "755", binary)
        graph = self.push(local, Path(entry.path).name)
        device = self.model_name()
        versions = {**tool_versions, "benchmark_model": _sha12(self.benchmark_binary)}
        records = []
        for v in variants:
            out, _ = self.run_benchmark(graph, v, runs, warmup, op_profiling)
            extra = {"mean_ms": round(out.inference_mean_us / 1e3, 4), "timer": "benchmark_model",
                     "median_from": "median" if out.inference.get("median") is not None else "avg",
                     "p5_ms": _ms(out.inference.get("p5")), "p95_ms": _ms(out.inference.get("p95")),
                     "max_ms": _ms(out.inference.get("max")), "std_ms": _ms(out.inference.get("std")),
                     "init_ms": _ms(out.init_us), "first_inference_ms": _ms(out.first_inference_us),
                     "delegation": out.delegation, "serial": self.serial, "measured_runs": out.inference.count}
            if out.op_profile:
                extra["op_profile"] = out.op_profile
            records.append(LatencyRecord(
                model=model, artifact=entry.path, format="tflite", precision=entry.precision,
                runtime=v.runtime, device=device, threads=v.threads, warmup=warmup, runs=runs,
                median_ms=out.median_ms, p90_ms=None, min_ms=out.min_ms, peak_rss_mb=out.peak_memory_mb,
                tool_versions=versions, extra={k: x for k, x in extra.items() if x is not None}))
        return records


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1e3, 4)


def _sha12(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()[:12]}"
