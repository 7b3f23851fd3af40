"""Publish into a local store; pull over HTTP (`meshport serve`) and S3 (moto); verify self-tests."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from artifacts import IntegrityError, Store, VersionExistsError, canonical_json
from artifacts import signing
from artifacts.selftest import load_bundle
from runtime.files import sha256_path
from runtime.record import ArtifactRecord

MODEL = "attention_mesh"


def test_layout_index_and_manifest(published, build_dir, keys):
    """DESIGN §4 layout; the manifest carries files, I/O contract, tools, evidence, source, licence, signature."""
    idx = json.loads((published / "index.json").read_text())
    m = idx["models"][MODEL]
    assert sorted(m["versions"]) == ["1.0.0", "1.1.0"]
    assert m["aliases"] == {"latest": "1.1.0", "stable": "1.0.0"}
    vdir = published / MODEL / "1.0.0"
    raw = (vdir / "manifest.json").read_bytes()
    assert m["versions"]["1.0.0"]["manifest_sha256"] == hashlib.sha256(raw).hexdigest()
    man = json.loads(raw)
    record = json.loads((build_dir / MODEL / "build.json").read_text())
    # every file, with sha256, size, format and precision; the .mlpackage is kept as its file tree
    for row in man["files"]:
        assert {"path", "sha256", "bytes", "format", "precision", "role"} <= set(row)
        p = vdir / row["path"]
        assert p.is_file() and p.stat().st_size == row["bytes"] and sha256_path(p) == row["sha256"]
    by_path = {a["path"]: a for a in man["artifacts"]}
    assert set(by_path) == {"attention_mesh.onnx", "attention_mesh-fp32.mlpackage"}
    for a in record["artifacts"]:   # the artifact digests are build.json's (sha256_path of a directory)
        assert by_path[a["path"]]["sha256"] == a["sha256"] == sha256_path(vdir / a["path"])
    assert by_path["attention_mesh-fp32.mlpackage"]["kind"] == "directory"
    assert any(f.endswith("weight.bin") for f in by_path["attention_mesh-fp32.mlpackage"]["members"])
    # I/O contract: spec + per-artifact tensors
    io = man["io_contract"]
    assert io["inputs"][0]["value_range"] == [0.0, 1.0] and io["inputs"][0]["channel_order"] == "RGB"
    assert "192" in io["preprocessing"] and io["inputs"][0]["layout"] == "NCHW"
    assert by_path["attention_mesh.onnx"]["inputs"][0]["shape"] == [1, 3, 192, 192]
    assert {o["name"] for o in by_path["attention_mesh.onnx"]["outputs"]} >= {"landmarks", "face_flag"}
    assert man["tool_versions"] == record["tool_versions"]
    assert man["source"]["spec_sha256"] == record["spec_sha256"]
    assert "git_commit" in man["source"]
    assert man["license"]["weights"]["license"] == "Apache-2.0" and "MediaPipe" in man["license"]["weights"]["attribution"]
    # evidence, with the non-finite max_rel made JSON-safe
    assert man["evidence"]["parity"]["passed"] is True and len(man["evidence"]["parity"]["edges"]) == 2
    assert man["evidence"]["latency"]["records"][0]["median_ms"] == 2.5
    assert man["evidence"]["latency"]["skipped"][0]["runtime"] == "coreml"
    assert json.loads((vdir / "evidence" / "parity.json").read_text())["passed"] is True
    # signature over the canonical manifest
    assert man["signed_by"] == man["signature"]["key_id"]
    assert signing.verify(man, keys[1]) == man["signed_by"]
    assert canonical_json(man) == json.dumps({k: v for k, v in man.items() if k != "signature"}, sort_keys=True,
                                             separators=(",", ":"), ensure_ascii=False).encode()
    # the generated card
    card = (vdir / "MODEL_CARD.md").read_text()
    for needle in ("## Inputs and outputs", "## Intended use and limits", "## Parity", "## Latency",
                   "Apache", "attention_mesh.onnx@runner", "| 2.5 |"):
        assert needle in card
    # self-test bundle: a real face input and that artifact's outputs
    meta, ins, outs = load_bundle(vdir / "selftest" / "attention_mesh.onnx.npz")
    assert ins["image"].shape == (1, 3, 192, 192) and 0 <= ins["image"].min() and ins["image"].max() <= 1
    assert outs["landmarks"].shape == (1, 478, 3) and meta["tolerances"]["landmarks"]["atol"] == 1e-3


def _same_files(pulled: Path, build_root: Path, names: list[str]) -> None:
    for n in names:
        a, b = pulled / n, build_root / n
        if b.is_dir():
            files = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
            assert files == sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
            for f in files:
                assert (a / f).read_bytes() == (b / f).read_bytes(), f
        else:
            assert a.read_bytes() == b.read_bytes(), n


def test_pull_over_http_is_byte_identical(served, build_dir, keys, tmp_path):
    store = Store(served)
    res = store.pull(f"{MODEL}@stable", tmp_path / "out", public_key=keys[1])
    assert res.version == "1.0.0" and res.signature
    _same_files(tmp_path / "out", build_dir / MODEL, ["attention_mesh.onnx", "attention_mesh-fp32.mlpackage"])
    assert (tmp_path / "out" / "selftest" / "attention_mesh-fp32.mlpackage.npz").is_file()
    assert signing.verify(json.loads((tmp_path / "out" / "manifest.json").read_text()), keys[1])
    assert not list((tmp_path / "out").glob(".meshport-pull-*"))
    # version specs resolve against the served index
    assert store.pull(f"{MODEL}@^1.0", tmp_path / "caret", format="onnx").version == "1.1.0"
    assert store.pull(f"{MODEL}@~1.0", tmp_path / "tilde", format="onnx").version == "1.0.0"
    assert store.fsck(deep=True).ok


def test_publish_and_pull_over_s3(s3, build_dir, keys, tmp_path):
    endpoint, bucket = s3
    store = Store(f"s3://{bucket}/prefix", endpoint_url=endpoint)
    res = store.publish(MODEL, build_dir, "2.0.0", key=keys[0], aliases=["beta"])
    assert res.signed_by
    out = store.pull(f"{MODEL}@beta", tmp_path / "out", public_key=keys[1])
    assert out.version == "2.0.0"
    _same_files(tmp_path / "out", build_dir / MODEL, ["attention_mesh.onnx", "attention_mesh-fp32.mlpackage"])
    assert store.fsck(deep=True).ok
    with pytest.raises(VersionExistsError, match="immutable"):   # index says so
        store.publish(MODEL, build_dir, "2.0.0", formats=["onnx"], key=keys[0])
    # the exclusive create itself refuses a second claim (If-None-Match: *), even without the index
    with pytest.raises(FileExistsError):
        store.backend.create(f"{MODEL}/2.0.0/.claim.json", b"{}")
    # compare-and-swap index update: a second version lands next to the first
    store.publish(MODEL, build_dir, "2.1.0", formats=["onnx"], key=keys[0])
    assert [r["version"] for r in store.list_versions(MODEL)] == ["2.0.0", "2.1.0"]
    assert store.resolve(MODEL, "latest") == "2.1.0"
    # the S3 endpoint can come from the environment (what the CLI's --s3-endpoint sets)
    import os
    os.environ["MESHPORT_S3_ENDPOINT"] = endpoint
    try:
        assert Store(f"s3://{bucket}/prefix").resolve(MODEL, "beta") == "2.0.0"
    finally:
        del os.environ["MESHPORT_S3_ENDPOINT"]


def test_verify_runs_self_tests(published, served, keys, tmp_path):
    res = Store(served).verify(f"{MODEL}@1.0.0", public_key=keys[1])
    assert res.passed and {r.artifact for r in res.results} == {"attention_mesh.onnx", "attention_mesh-fp32.mlpackage"}
    lm = next(r for r in res.results if r.artifact == "attention_mesh.onnx").outputs["landmarks"]
    assert lm["passed"] and lm["max_abs"] <= 1e-3
    # a pulled directory verifies on its own (what an app team does after `pull`)
    from artifacts import verify_dir
    Store(published).pull(f"{MODEL}@1.1.0", tmp_path / "p", format="onnx")
    assert verify_dir(tmp_path / "p", public_key=keys[1]).passed


def test_pull_writes_nothing_on_integrity_failure(store_copy, tmp_path):
    onnx = store_copy / MODEL / "1.1.0" / "attention_mesh.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01                                   # one flipped bit
    onnx.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="sha256"):
        Store(store_copy).pull(f"{MODEL}@1.1.0", out)
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(IntegrityError):
        Store(store_copy).pull(f"{MODEL}@1.1.0", existing)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    rep = Store(store_copy).fsck(deep=True)
    assert not rep.ok and any("sha256 mismatch" in p for p in rep.problems)


def test_selftest_bundle_checks_values(published, tmp_path):
    """A bundle whose golden outputs disagree with what the artifact computes fails, per output."""
    from artifacts.selftest import check, run_bundle
    vdir = published / MODEL / "1.1.0"
    meta, ins, outs = load_bundle(vdir / "selftest" / "attention_mesh.onnx.npz")
    assert run_bundle(vdir / "attention_mesh.onnx", vdir / "selftest" / "attention_mesh.onnx.npz").passed
    moved = dict(outs, landmarks=outs["landmarks"] + 0.01)
    res = check(meta, moved, outs)
    assert not res.passed and not res.outputs["landmarks"]["passed"] and res.outputs["face_flag"]["passed"]
    assert "atol" in res.outputs["landmarks"]["failures"][0]


def test_tflite_selftest_uses_nhwc(tmp_path):
    """Format-agnostic path for TFLite: the NHWC golden input and LiteRT, on MediaPipe's own .tflite."""
    import modelzoo
    from artifacts.selftest import make_bundle, run_bundle
    from modelzoo.fetch import fetch
    path = Path(fetch("face_landmark.tflite"))
    entry = ArtifactRecord.from_json({
        "path": path.name, "format": "tflite", "precision": "fp16", "sha256": sha256_path(path),
        "inputs": [{"name": "input_1", "shape": [1, 192, 192, 3], "dtype": "float32", "layout": "NHWC"}]})
    data, meta = make_bundle(path, entry, modelzoo.get_spec(MODEL))
    assert meta["inputs"]["input_1"]["shape"] == [1, 192, 192, 3]
    (tmp_path / "b.npz").write_bytes(data)
    res = run_bundle(path, tmp_path / "b.npz")
    assert res.passed and len(res.outputs) >= 2
    _, ins, _ = load_bundle(data)
    from modelzoo.data import sample_face
    assert np.array_equal(ins["input_1"].transpose(0, 3, 1, 2), sample_face(192))
