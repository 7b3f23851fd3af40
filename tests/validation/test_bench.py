"""The latency harness: statistics, the latency.json schema, a real (small) build measured on
the host runtimes, benchmark_model output parsing against captured text, adb command
construction and typed errors (no phone needed), the CLI. No test asserts a wall-clock time."""
from __future__ import annotations

import argparse
import dataclasses
import json
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from validation.bench import (RECORD_FIELDS, BenchError, LatencyFileError, LatencyRecord, PeakRSS, bench_build,
                              format_table, plan, read_latency, summarize, time_calls, write_latency)
from validation.bench.android import (AdbNotFoundError, AndroidDevice, BenchmarkBinaryNotFoundError,
                                      BenchmarkOutputError, NoDeviceError, Variant, default_variants,
                                      parse_adb_devices, parse_benchmark_output)
import modelzoo
from runtime.record import ArtifactRecord, BuildRecord, BuildRecordError
from runtime.runners import get_runner

DATA = Path(__file__).parents[1] / "data" / "bench"
MODEL = "attention_mesh_paper"


# -- statistics ----------------------------------------------------------------------------------

def test_summarize_median_p90_min():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0])
    assert (s.runs, s.median_ms, s.min_ms, s.max_ms, s.mean_ms) == (10, 5.5, 1.0, 10.0, 5.5)
    assert s.p90_ms == pytest.approx(9.1)          # linear interpolation between order statistics
    one = summarize([2.5])
    assert one.median_ms == one.p90_ms == one.min_ms == 2.5


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, -0.5], [[1.0, 2.0]]])
def test_summarize_refuses_bad_timings(bad):
    with pytest.raises(ValueError):
        summarize(bad)


def test_time_calls_warms_up_then_times_each_run():
    calls = []
    ticks = iter(range(100))
    times = time_calls(lambda: calls.append(1), runs=3, warmup=2, timer=lambda: next(ticks) * 1e-3)
    assert len(calls) == 5 and times == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        time_calls(lambda: None, runs=0, warmup=0)


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as rss:
        block = np.ones(64 * 2**20 // 8)   # 64 MB touched
        del block
    assert rss.mb is not None and rss.mb > 60 and rss.scope in ("block", "process")


# -- records ---------------------------------------------------------------------------------------

def _record(**kw) -> LatencyRecord:
    base = dict(model="m", artifact="m.onnx", format="onnx", precision="fp32", runtime="onnxruntime", device="host",
                threads=1, warmup=2, runs=5, median_ms=1.23456, p90_ms=2.0, min_ms=1.0, peak_rss_mb=100.0,
                tool_versions={"onnxruntime": "1.23.0"})
    base.update(kw)
    return LatencyRecord(**base)


def test_record_schema_is_the_design_contract():
    assert RECORD_FIELDS == ("model", "artifact", "format", "precision", "runtime", "device", "threads", "warmup",
                             "runs", "median_ms", "p90_ms", "min_ms", "peak_rss_mb", "tool_versions")
    j = _record(extra={"mean_ms": 1.3}).to_json()
    assert list(j)[:len(RECORD_FIELDS)] == list(RECORD_FIELDS) and j["mean_ms"] == 1.3
    assert LatencyRecord.from_json(j).to_json() == j
    with pytest.raises(LatencyFileError, match="lacks"):
        LatencyRecord.from_json({"model": "m"})


def test_latency_json_merges_by_key(tmp_path):
    path = tmp_path / "latency.json"
    write_latency(path, "m", [_record(), _record(threads=2)], [{"runtime": "coreml-all", "artifact": None,
                                                                   "reason": "macOS only"}])
    write_latency(path, "m", [_record(median_ms=9.0), _record(runtime="android-tflite-gpu", device="Pixel 7")])
    records, skipped = read_latency(path)
    got = {(r.runtime, r.threads, r.device): r.median_ms for r in records}
    assert got == {("onnxruntime", 1, "host"): 9.0, ("onnxruntime", 2, "host"): 1.2346,
                   ("android-tflite-gpu", 1, "Pixel 7"): 1.2346}
    assert skipped and skipped[0]["runtime"] == "coreml-all"
    assert json.loads(path.read_text())["model"] == "m"
    path.write_text("{not json")
    with pytest.raises(LatencyFileError):
        read_latency(path)


# -- the harness on a real build -------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_build(tmp_path_factory):
    from converters.build import build
    out = tmp_path_factory.mktemp("bench_build")
    build(MODEL, out, formats=["onnx"])
    return out


def test_bench_build_writes_latency_json(paper_build):
    ticks = []
    res = bench_build(MODEL, paper_build, runtimes=["pytorch", "onnxruntime", "coreml-all"], threads=[1, 2],
                      runs=3, warmup=1, progress=lambda label, n: ticks.append(n))
    assert res.path == paper_build / MODEL / "latency.json"
    keys = {(r.runtime, r.threads) for r in res.records}
    assert keys == {("pytorch", 1), ("pytorch", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    for r in res.records:
        j = r.to_json()
        assert all(k in j for k in RECORD_FIELDS)
        assert r.runs == 3 and r.warmup == 1 and r.model == MODEL
        assert 0 < r.min_ms <= r.median_ms <= r.p90_ms
        assert r.peak_rss_mb > 0 and r.tool_versions["onnxruntime"] and r.device
    assert sum(ticks) == 4 * (3 + 1)
    onnx = next(r for r in res.records if r.runtime == "onnxruntime")
    assert onnx.artifact == f"{MODEL}.onnx" and onnx.format == "onnx" and onnx.precision == "fp32"
    import platform
    if platform.system() != "Darwin":
        assert any(s["runtime"] == "coreml-all" for s in res.skipped)
    on_disk, _ = read_latency(res.path)
    assert {(r.runtime, r.threads) for r in on_disk} == keys
    assert "onnxruntime" in format_table(res.records)


def test_plan_skips_with_reasons_and_rejects_unknown_runtimes(paper_build):
    record = BuildRecord.load(paper_build, modelzoo.get_spec(MODEL))
    jobs, skipped = plan(record, ["tflite", "onnxruntime-cuda", "onnxruntime"], threads=[1, 2])
    cuda = get_runner("onnxruntime-cuda").is_available().ok
    want = [("onnxruntime-cuda", None)] * cuda + [("onnxruntime", 1), ("onnxruntime", 2)]
    assert [(j.runtime, j.threads) for j in jobs] == want
    assert any(s["runtime"] == "onnxruntime-cuda" for s in skipped) != cuda
    assert any(s["runtime"] == "tflite" and "no tflite" in s["reason"] for s in skipped)
    from modelzoo.errors import RegistryError
    with pytest.raises(RegistryError, match="known"):
        plan(record, ["tensorrt"])


def test_missing_build_is_a_clear_error(tmp_path):
    with pytest.raises(BuildRecordError, match="meshport build"):
        BuildRecord.load(tmp_path, modelzoo.get_spec(MODEL))


def test_cuda_and_coreml_runners_say_why_they_are_unavailable():
    import platform

    import onnxruntime as ort
    cuda = get_runner("onnxruntime-cuda").is_available()
    assert cuda.ok == ("CUDAExecutionProvider" in ort.get_available_providers())
    if not cuda.ok:
        assert "CUDAExecutionProvider" in cuda.reason
    for name in ("coreml-cpu", "coreml-cpu-gpu", "coreml-all"):
        avail = get_runner(name).is_available()
        assert avail.ok == (platform.system() == "Darwin") and (avail.ok or "macOS" in avail.reason)
    assert {get_runner(n).compute_units for n in ("coreml-cpu", "coreml-cpu-gpu", "coreml-all")} == \
        {"CPU_ONLY", "CPU_AND_GPU", "ALL"}


# -- benchmark_model output -------------------------------------------------------------------------

def test_parse_benchmark_model_cpu_with_percentiles():
    out = parse_benchmark_output((DATA / "benchmark_model_cpu.txt").read_text())
    assert out.inference.count == 1000 and out.warmup.count == 9
    assert out.median_ms == pytest.approx(51.891) and out.min_ms == pytest.approx(49.088)
    assert out.inference.get("p95") == 68628 and out.inference_mean_us == pytest.approx(63743.2)
    assert (out.init_us, out.first_inference_us, out.warmup_avg_us) == (119515, 87112, 58147.4)
    assert out.peak_memory_mb == pytest.approx(55.4961)
    assert out.delegation == "TfLiteXNNPackDelegate: 2168 of 2168 nodes"


def test_parse_benchmark_model_gpu():
    out = parse_benchmark_output((DATA / "benchmark_model_gpu.txt").read_text())
    assert out.delegation == "GPU: complete"
    assert out.inference.count == 50 and out.median_ms == pytest.approx(115.350)
    assert out.inference_avg_us == 115246 and out.init_us == 1361236


def test_parse_benchmark_model_without_percentiles_uses_the_mean():
    out = parse_benchmark_output((DATA / "benchmark_model_2019.txt").read_text())
    assert out.inference.count == 50 and out.inference.get("median") is None
    assert out.median_ms == pytest.approx(266.473) and out.min_ms == pytest.approx(265.837)
    assert out.peak_memory_mb is None


def test_parse_benchmark_model_op_profile():
    out = parse_benchmark_output((DATA / "benchmark_model_op_profiling.txt").read_text())
    assert out.inference.count == 50 and out.inference_mean_us == 79732    # "Timings (microseconds)"
    assert out.init_us == 38467 and out.inference_avg_us == pytest.approx(79760.9)
    assert [o["type"] for o in out.op_profile][:3] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"]
    assert out.op_profile[0]["avg_ms"] == pytest.approx(4.269)
    assert out.op_profile[0]["name"] == "MobilenetV1/MobilenetV1/Conv2d_0/Relu6"
    assert out.op_type_summary[0] == {"type": "CONV_2D", "count": 15, "avg_ms": 1.406, "pct": 89.270}


def test_parse_benchmark_model_failure_is_typed():
    with pytest.raises(BenchmarkOutputError, match="Failed to allocate tensors"):
        parse_benchmark_output((DATA / "benchmark_model_failed.txt").read_text())
    with pytest.raises(BenchmarkOutputError, match="no timing"):
        parse_benchmark_output("INFO: STARTING!\n")


def test_parse_adb_devices():
    assert parse_adb_devices((DATA / "adb_devices.txt").read_text()) == [
        ("0A051FDD4000BC", "device"), ("emulator-5554", "unauthorized")]


# -- driving a phone, with a fake adb ---------------------------------------------------------------

FAKE_ADB = """#!{python}
import sys
from pathlib import Path
data = Path({data!r})
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
if args == ["devices"]:
    print(Path({devices!r}).read_text(), end="")
elif args[:1] == ["push"] or args[:2] in (["shell", "mkdir"], ["shell", "chmod"]):
    pass
elif args[:3] == ["shell", "getprop", "ro.product.model"]:
    print("Pixel 2 XL")
elif args[:1] == ["shell"] and args[1].endswith("/benchmark_model"):
    with open({log!r}, "a") as f:
        f.write(" ".join(args) + "\\n")
    name = "benchmark_model_gpu.txt" if "--use_gpu=true" in args else "benchmark_model_cpu.txt"
    print((data / name).read_text(), end="")
else:
    print("unexpected: " + " ".join(args), file=sys.stderr)
    sys.exit(1)
"""


def _fake_adb(tmp_path: Path, devices: str) -> tuple[Path, Path]:
    dev = tmp_path / "devices.txt"
    dev.write_text(devices)
    log = tmp_path / "calls.log"
    adb = tmp_path / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable, data=str(DATA), devices=str(dev), log=str(log)))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    return adb, log


@pytest.fixture
def binary(tmp_path):
    b = tmp_path / "benchmark_model"
    b.write_bytes(b"\x7fELF fake")
    return b


def test_missing_adb_binary(tmp_path, binary, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("ADB", raising=False)
    with pytest.raises(AdbNotFoundError, match="adb not found"):
        AndroidDevice(binary)
    with pytest.raises(AdbNotFoundError):
        AndroidDevice(binary, adb=str(tmp_path / "nope" / "adb"))


def test_missing_benchmark_binary(tmp_path):
    adb, _ = _fake_adb(tmp_path, "List of devices attached\n0A051FDD4000BC\tdevice\n")
    with pytest.raises(BenchmarkBinaryNotFoundError, match="not found"):
        AndroidDevice(tmp_path / "benchmark_model", adb=str(adb))


@pytest.mark.parametrize("devices, match", [
    ("List of devices attached\n\n", "no ready device"),
    ("List of devices attached\nabc\tunauthorized\n", "no ready device"),
    ("List of devices attached\nabc\tdevice\ndef\tdevice\n", "--serial"),
])
def test_no_usable_device(tmp_path, binary, devices, match):
    adb, _ = _fake_adb(tmp_path, devices)
    with pytest.raises(NoDeviceError, match=match):
        AndroidDevice(binary, adb=str(adb))


def test_unknown_serial(tmp_path, binary):
    adb, _ = _fake_adb(tmp_path, (DATA / "adb_devices.txt").read_text())
    with pytest.raises(NoDeviceError, match="not attached"):
        AndroidDevice(binary, adb=str(adb), serial="XYZ")
    with pytest.raises(NoDeviceError, match="unauthorized"):
        AndroidDevice(binary, adb=str(adb), serial="emulator-5554")


def test_benchmark_command(tmp_path, binary):
    adb, _ = _fake_adb(tmp_path, (DATA / "adb_devices.txt").read_text())
    dev = AndroidDevice(binary, adb=str(adb))
    assert dev.serial == "0A051FDD4000BC"
    cpu = dev.benchmark_command("/data/local/tmp/meshport/m.tflite", Variant("android-tflite-cpu", False, 2), 50, 5)
    assert cpu == [str(adb), "-s", "0A051FDD4000BC", "shell", "/data/local/tmp/meshport/benchmark_model",
                   "--graph=/data/local/tmp/meshport/m.tflite", "--num_runs=50", "--warmup_runs=5", "--min_secs=0",
                   "--warmup_min_secs=0", "--num_threads=2"]
    gpu = dev.benchmark_command("/x.tflite", Variant("android-tflite-gpu", True, None), 10, 1, op_profiling=True)
    assert "--use_gpu=true" in gpu and "--enable_op_profiling=true" in gpu
    assert not any(a.startswith("--num_threads") for a in gpu)


def test_android_records_like_any_target(tmp_path, binary, paper_build):
    adb, log = _fake_adb(tmp_path, (DATA / "adb_devices.txt").read_text())
    dev = AndroidDevice(binary, adb=str(adb))
    entry = ArtifactRecord("m-fp32.tflite", "tflite", "fp32", sha256="", bytes=4)
    (tmp_path / "m-fp32.tflite").write_bytes(b"TFL3")
    records = dev.bench_artifact("m", tmp_path, entry, default_variants([1]), runs=20, warmup=2,
                                 tool_versions={"ai-edge-litert": "2.1.0"})
    assert [(r.runtime, r.threads) for r in records] == [("android-tflite-cpu", 1), ("android-tflite-gpu", None)]
    cpu, gpu = records
    assert cpu.device == "Pixel 2 XL" and cpu.median_ms == pytest.approx(51.891) and cpu.p90_ms is None
    assert gpu.median_ms == pytest.approx(115.35) and gpu.extra["delegation"] == "GPU: complete"
    assert cpu.tool_versions["benchmark_model"].startswith("sha256:")
    assert all(k in cpu.to_json() for k in ("p5_ms", "p95_ms", "init_ms"))
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and "--use_gpu=true" in calls[1] and "--num_runs=20" in calls[0]
    write_latency(tmp_path / "latency.json", "m", records)
    assert len(read_latency(tmp_path / "latency.json")[0]) == 2
    with pytest.raises(Exception, match="tflite"):
        dev.bench_artifact("m", tmp_path, dataclasses.replace(entry, format="onnx"), default_variants(), 1, 0, {})


# -- the CLI ---------------------------------------------------------------------------------------

def _cli(*argv: str) -> int:
    from meshport.bench_cli import add_bench_command
    p = argparse.ArgumentParser(prog="meshport")
    add_bench_command(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["bench", *argv])
    return args.func(args)


def test_cli_bench_json(paper_build, capsys):
    assert _cli(MODEL, "--build", str(paper_build), "--runtimes", "onnxruntime", "--runs", "2", "--warmup", "0",
                "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["runtime"] for r in out["records"]] == ["onnxruntime"] and Path(out["latency"]).exists()


def test_cli_bench_table_and_errors(paper_build, capsys):
    assert _cli(MODEL, "--build", str(paper_build), "--runtimes", "onnxruntime,coreml-cpu", "--runs", "2",
                "--warmup", "0", "-q") == 0
    text = capsys.readouterr().out
    assert "median" in text and "skipped coreml-cpu" in text
    with pytest.raises(ValueError, match="--threads"):
        _cli(MODEL, "--build", str(paper_build), "--threads", "0")
    with pytest.raises(ValueError, match="--runs"):
        _cli(MODEL, "--build", str(paper_build), "--runs", "0")
    with pytest.raises(ValueError, match="no .tflite"):
        _cli(MODEL, "--build", str(paper_build), "--android", str(paper_build / "benchmark_model"))
    with pytest.raises(BuildRecordError, match="no build record"):
        _cli("attention_mesh", "--build", str(paper_build))
    with pytest.raises(SystemExit):                  # Table 1 is an experiment now, not a bench option
        _cli("--compare", "attention_mesh", MODEL, "--build", str(paper_build))
