"""The whole recipe on the real model: build → validate → bench → publish, then pull and verify."""
from __future__ import annotations

import json

import pytest

import modelzoo
from artifacts import Store
from runtime.litert_gpu import availability
from meshport.release import release


@pytest.mark.slow
def test_release_publishes_a_verifiable_version_and_is_idempotent(full_build, tmp_path, monkeypatch):
    root, _ = full_build
    store = tmp_path / "store"
    monkeypatch.setenv("MESHPORT_TRUST_DIR", str(tmp_path / "trust"))   # release trusts its own key here
    first = release("attention_mesh", "1.0.0", store=str(store), out=root.parent, runs=5)
    assert first.published and first.report.exists() and first.public_key.exists()
    assert {r["format"] for r in first.rows} == {"onnx", "tflite", "coreml"}
    tfl = next(r for r in first.rows if r["path"] == "attention_mesh-fp32.tflite")
    assert tfl["max_px"] <= 1e-3 and tfl["median_ms"] > 0
    latency = json.loads((root / "latency.json").read_text())
    assert any(r["runtime"] == "tflite" for r in latency["records"])
    device, _ = availability()
    if device is not None:        # the GPU accelerator: parity in the table, latency with the adapter's name
        assert 0 < tfl["gpu_max_px"] <= modelzoo.get_spec("attention_mesh").tolerance("tflite", "fp16-compute",
                                                                                        "landmarks").max_px
        gpu = [r for r in latency["records"] if r["runtime"] == "tflite-gpu"]
        assert {r["precision"] for r in gpu} == {"fp32", "fp16", "int8"}
        for r in gpu:
            assert device.name in r["device"] and r["gpu"]["name"] == device.name and r["arithmetic"] == "fp16"
            assert ("not device latency" in r["latency_kind"]) == device.software
    # Pull what was published and check it against the build, signature included.
    st = Store(str(store))
    pulled = st.pull("attention_mesh@latest", tmp_path / "pulled", format="tflite", precision="fp32")
    assert (tmp_path / "pulled" / "attention_mesh-fp32.tflite").read_bytes() == \
        (root / "attention_mesh-fp32.tflite").read_bytes()
    assert pulled.model == "attention_mesh" and pulled.signature  # verified: release trusted its key
    # The same release again is a no-op, not an error.
    again = release("attention_mesh", "1.0.0", store=str(store), out=root.parent, runs=3)
    assert not again.published
