"""`meshport diff`: two real published versions whose evidence differs — a slower runtime and a
grown landmark error — are each reported, as a table, JSON and JUnit XML; identical versions pass."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from artifacts import Store
from artifacts.diff import diff_manifests, diff_versions

MODEL = "attention_mesh"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, build_dir, keys) -> Path:
    """1.0.0 from the build as it is; 1.1.0 from a copy whose latency.json says the ONNX artifact
    got 2× slower and whose parity.json says the Core ML landmarks got 3× worse."""
    root = tmp_path_factory.mktemp("diff")
    store = Store(root / "store")
    store.publish(MODEL, build_dir, "1.0.0", key=keys[0])
    worse = root / "build"
    shutil.copytree(build_dir, worse)
    lat = json.loads((worse / MODEL / "latency.json").read_text())
    for r in lat["records"]:
        if r["format"] == "onnx":
            r["median_ms"] *= 2.0
    (worse / MODEL / "latency.json").write_text(json.dumps(lat))
    par = json.loads((worse / MODEL / "parity.json").read_text())
    for e in par["edges"]:
        if e["format"] == "coreml":
            lm = e["outputs"]["landmarks"]
            lm["max_abs"] = lm["max_abs"] * 3 + 1e-3
            lm["landmarks"]["all"]["max_px"] = lm["max_abs"]
    (worse / MODEL / "parity.json").write_text(json.dumps(par))
    store.publish(MODEL, worse, "1.1.0", key=keys[0])
    return root / "store"


def test_a_slowdown_and_a_grown_error_are_each_a_regression(two_versions):
    d = diff_versions(Store(two_versions), f"{MODEL}@1.0.0", f"{MODEL}@latest")
    by = {a.key: a for a in d.artifacts}
    assert set(by) == {"onnx/fp32", "coreml/fp32"} and not d.passed
    onnx, coreml = by["onnx/fp32"], by["coreml/fp32"]
    assert onnx.verdict == "REGRESSED" and onnx.change == "same file"
    assert [r["ratio"] for r in onnx.latency] == [2.0] and "×2.00 > ×1.25" in onnx.problems[0]
    assert coreml.verdict == "REGRESSED" and coreml.latency[0]["ratio"] == 1.0
    assert coreml.parity["max_px"]["new"] > 3 * coreml.parity["max_px"]["old"]
    assert any("max_px grew" in p for p in coreml.problems) and not any("median" in p for p in coreml.problems)
    # the same pair within looser limits passes: the limits are what decides
    assert diff_versions(Store(two_versions), f"{MODEL}@1.0.0", f"{MODEL}@1.1.0", max_slowdown=2.5,
                         max_error_growth=100.0).passed


def test_identical_versions_pass_and_an_own_failure_fails(two_versions):
    store = Store(two_versions)
    manifest, _ = store.read_manifest(MODEL, "1.0.0")
    same = diff_manifests(manifest, manifest)
    assert same.passed and all(a.verdict == "OK" and a.change == "same file" for a in same.artifacts)
    failing = json.loads(json.dumps(manifest))
    failing["version"] = "1.0.1"
    for e in failing["evidence"]["parity"]["edges"]:
        e["passed"] = e["format"] != "onnx"
    d = diff_manifests(manifest, failing)
    assert {a.key: a.verdict for a in d.artifacts} == {"onnx/fp32": "FAIL", "coreml/fp32": "OK"}
    dropped = json.loads(json.dumps(manifest))
    dropped["artifacts"] = [a for a in dropped["artifacts"] if a["format"] == "onnx"]
    assert {a.key: (a.change, a.verdict) for a in diff_manifests(manifest, dropped).artifacts}["coreml/fp32"] == \
        ("removed", "REGRESSED")


def test_cli_table_json_and_junit(two_versions, tmp_path):
    junit = tmp_path / "diff.xml"
    r = subprocess.run([sys.executable, "-m", "meshport", "diff", f"{MODEL}@1.0.0", f"{MODEL}@1.1.0", "--store",
                        str(two_versions), "--junit", str(junit)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stderr
    assert "onnx/fp32" in r.stdout and "REGRESSED" in r.stdout and r.stdout.strip().endswith("FAILED")
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "2" and suite.get("failures") == "2"
    assert {c.get("classname") + "/" + c.get("name") for c in suite} == {f"{MODEL}.onnx/fp32", f"{MODEL}.coreml/fp32"}
    r = subprocess.run([sys.executable, "-m", "meshport", "diff", f"{MODEL}@1.0.0", f"{MODEL}@1.0.0", "--store",
                        str(two_versions), "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["passed"] is True
    r = subprocess.run([sys.executable, "-m", "meshport", "diff", f"{MODEL}@1.0.0", "face_detector@1.0.0",
                        "--store", str(two_versions)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "one model" in r.stderr
