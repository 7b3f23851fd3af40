"""Timing statistics, peak memory and the host's description for latency records."""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Summary of N timed runs, in milliseconds."""

    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    max_ms: float

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(times_ms: list[float] | np.ndarray) -> Stats:
    """Median, p90 (linear interpolation between order statistics), min, mean and max."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("summarize needs at least one timing")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("timings must be finite and non-negative")
    return Stats(runs=int(t.size), median_ms=float(np.median(t)), p90_ms=float(np.percentile(t, 90)),
                 min_ms=float(t.min()), mean_ms=float(t.mean()), max_ms=float(t.max()))


def time_calls(fn: Callable[[], object], runs: int, warmup: int,
               timer: Callable[[], float] = time.perf_counter,
               on_run: Callable[[], None] | None = None) -> list[float]:
    """Call `fn` `warmup` times untimed, then `runs` times, each timed with `timer` (ms)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs ≥ 1 and warmup ≥ 0 (got runs={runs}, warmup={warmup})")
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = timer()
        fn()
        out.append((timer() - t0) * 1e3)
        if on_run:
            on_run()
    return out


class PeakRSS:
    """Peak resident memory (MB) of this process over a block.

    On Linux the kernel's high-water mark (VmHWM) is reset on entry by writing 5 to
    /proc/self/clear_refs, so the peak is the block's own; elsewhere (or where the reset is not
    permitted) it is the process's lifetime peak from getrusage, and `scope` says so."""

    def __enter__(self) -> "PeakRSS":
        self.scope = "process"
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.scope = "block"
        except OSError:
            pass
        self.mb: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        self.mb = peak_rss_mb() if self.scope == "process" else _vm_hwm_mb()
        if self.mb is None:
            self.scope, self.mb = "process", peak_rss_mb()


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """Lifetime peak RSS of this process in MB (getrusage: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def host_description() -> str:
    """e.g. 'x86_64 Intel(R) Xeon(R) CPU @ 2.20GHz, 2 CPUs, Linux'."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            import subprocess
            cpu = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5).stdout.strip() or cpu
        except Exception:
            pass
    return f"{platform.machine()} {cpu}, {os.cpu_count()} CPUs, {platform.system()}".replace("  ", " ").strip()
