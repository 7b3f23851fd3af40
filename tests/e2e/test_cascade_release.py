"""face_mesh_cascade, the paper's cascade baseline, released from the CLI: every target of its
spec (ONNX; TFLite fp32, fp16 and int8, each GPU-clean; Core ML fp32 and fp16) from the session's
cascade build, validated on every runner of each format (ONNX Runtime; TFLite on the CPU and on
LiteRT's GPU accelerator; the MIL reference evaluator), benchmarked, published into a local store
and pulled back verified."""
from __future__ import annotations

import json

import pytest

from modelzoo.spec import DEFAULT_TARGETS

from meshport_cli import REPO, RUNNERS, cli

pytestmark = pytest.mark.slow

MODEL = "face_mesh_cascade"


@pytest.fixture(scope="module")
def released(cascade_build, tmp_path_factory):
    """`meshport release face_mesh_cascade` on the session's cascade build directory (the build is
    up to date, so the release validates, benchmarks and publishes what the tests built)."""
    root, _ = cascade_build
    store = tmp_path_factory.mktemp("cascade_store")
    r = cli("release", MODEL, "--version", "1.0.0", "-o", str(root.parent), "--store", str(store), "--runs", "3",
            "--json", cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return root, store, json.loads(r.stdout)


def test_every_target_is_released(released):
    root, store, summary = released
    assert summary["published"]
    got = {(r["format"], r["precision"]) for r in summary["artifacts"]}
    assert got == set(DEFAULT_TARGETS)
    for row in summary["artifacts"]:
        assert row["max_px"] is not None, row
        if row["format"] != "coreml":       # Core ML's own runtime is macOS-only: no latency here
            assert row["median_ms"] > 0, row
    manifest = json.loads((store / MODEL / "1.0.0" / "manifest.json").read_text())
    assert manifest["signature"]
    record = json.loads((root / "build.json").read_text())
    for a in record["artifacts"]:
        if a["format"] == "tflite":   # GPU-clean, the int8 one too (its hybrid FCs made float)
            assert a["gpu_check"]["ok"] and not a["gpu_check"]["flagged"], (a["path"], a["gpu_check"]["flagged"])
    int8 = next(a for a in record["artifacts"] if a["precision"] == "int8")
    assert int8["variant"] == "dynamic_range_quant" and int8["hybrid_fc_made_float"] > 0


def test_every_edge_passes_on_every_runner(released):
    """parity.json of the release: each target checked against PyTorch on every runner of its
    format, GPU accelerator included where it runs here, and every edge within its bounds."""
    root, _, _ = released
    parity = json.loads((root / "parity.json").read_text())
    assert parity["passed"] and not parity["errors"]
    seen: dict[tuple[str, str], set[str]] = {}
    for e in parity["edges"]:
        if e["reference"] != "pytorch":
            continue
        assert e["passed"], (e["candidate"], e["input_set"], e.get("failures"))
        seen.setdefault((e["format"], e["precision"]), set()).add(e["candidate"].split("@")[1])
    for fmt, prec in DEFAULT_TARGETS:
        assert RUNNERS[fmt] <= seen.get((fmt, prec), set()), (fmt, prec, seen)


def test_pull_gives_back_the_build_verified(released, tmp_path):
    root, store, _ = released
    pulled = tmp_path / "pulled"
    p = cli("pull", f"{MODEL}@1.0.0", "--store", str(store), "-o", str(pulled), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "UNVERIFIED" not in p.stderr + p.stdout
    record = json.loads((root / "build.json").read_text())
    files = [a["path"] for a in record["artifacts"] if not a["path"].endswith(".mlpackage")]
    assert {f"{MODEL}.onnx", f"{MODEL}-int8.tflite"} <= set(files)
    for name in files:
        assert (pulled / name).read_bytes() == (root / name).read_bytes(), name
