"""Latency: the harness (latency.json) over the runtime's runners, Android phones through adb and
benchmark_model, and the photo pipeline's latency."""
from .harness import (DEFAULT_RUNTIMES, THREADED, BenchError, BenchResult, Job, bench_build, bench_runner,
                      device_for, face_feed, format_table, plan, tool_versions)
from .records import LATENCY_JSON, RECORD_FIELDS, LatencyFileError, LatencyRecord, read_latency, write_latency
from .stats import PeakRSS, Stats, host_description, peak_rss_mb, summarize, time_calls

__all__ = ["DEFAULT_RUNTIMES", "THREADED", "BenchError", "BenchResult", "Job", "bench_build", "bench_runner",
           "device_for", "face_feed", "format_table", "plan", "tool_versions", "LATENCY_JSON",
           "RECORD_FIELDS", "LatencyFileError", "LatencyRecord", "read_latency", "write_latency", "PeakRSS",
           "Stats", "host_description", "peak_rss_mb", "summarize", "time_calls"]
