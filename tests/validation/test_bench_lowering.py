"""`meshport bench MODEL --lowering compare`: the fused GridSample fast path and the general
lowering side by side on attention_mesh, with very few runs: the JSON's structure and that its
numbers are real (positive times, op counts, parity within the fp32 bound). No speed is asserted."""
from __future__ import annotations

import json

import pytest

from meshport.cli import main
from validation.bench.lowering import ORDER

pytestmark = pytest.mark.slow      # two full onnx→tflite conversions of attention_mesh


def test_compare_writes_real_numbers(tmp_path, capsys):
    dest = tmp_path / "cmp.json"
    assert main(["bench", "attention_mesh", "--lowering", "compare", "--build", str(tmp_path / "none"),
                 "--rounds", "1", "--runs", "3", "--warmup", "1", "-o", str(dest), "--json"]) == 0
    out = json.loads(dest.read_text())
    assert json.loads(capsys.readouterr().out)["path"] == str(dest)
    assert out["model"] == "attention_mesh" and out["kind"] == "gridsample-lowering-compare"
    assert (out["rounds"], out["runs"], out["warmup"], out["threads"]) == (1, 3, 1, 1)
    assert set(out["lowerings"]) == set(ORDER) and out["tool_versions"] and out["device"]
    hists = {}
    for name, rec in out["lowerings"].items():
        assert len(rec["convert_s"]) == 1 and all(s > 0 for s in rec["convert_s"]), name
        assert rec["convert_median_s"] > 0
        lat = rec["latency_ms"]
        assert lat["runs"] == 3 and 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"], name
        assert rec["ops"] == sum(rec["op_counts"].values()) > 0 and rec["bytes"] > 0
        assert isinstance(rec["gpu_clean"], bool) and len(rec["sha256"]) == 64
        hists[name] = rec["op_counts"]
    assert out["lowerings"]["fused"]["gpu_clean"]                # what builds ship (the static check)
    assert all(isinstance(rec["gpu_dynamic"].get("ran"), bool) for rec in out["lowerings"].values())
    # really two lowerings: the fused one's runtime-index gathers (CAST to int32), the general one's
    # batched-MatMul contraction (the model's own constant-index gathers are in both)
    assert hists["fused"].get("CAST") and not hists["fused"].get("BATCH_MATMUL")
    assert hists["general"].get("BATCH_MATMUL") and not hists["general"].get("CAST")
    ratio = out["ratio_general_over_fused"]
    assert ratio["convert_median"] > 0 and ratio["latency_median"] > 0
    parity = out["parity"]
    assert parity["inputs"] == ["sample_face", "seeded"] and parity["passed"]
    for o in ("landmarks", "face_flag"):
        rec = parity["outputs"][o]
        assert rec["bound"] is not None and 0 <= rec["max_abs"] <= rec["bound"] and rec["passed"]


def _exit(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_compare_refuses_bad_values(tmp_path, capsys):
    assert _exit(["bench", "attention_mesh", "--lowering", "compare", "--rounds", "0", "-o", str(tmp_path)]) != 0
    assert "--rounds must be ≥ 1" in capsys.readouterr().err
    assert _exit(["bench", "attention_mesh", "--lowering", "fastest", "-o", str(tmp_path)]) != 0
    assert "unknown value fastest; valid: compare" in capsys.readouterr().err
