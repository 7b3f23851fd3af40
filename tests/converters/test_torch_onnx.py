"""torch → ONNX step and the build around it, on the real models."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

import modelzoo
from converters import ConversionError
from converters.torch_onnx import torch_to_onnx
from converters.build import build
from runtime.runners import get_runner
from modelzoo.errors import UnknownModelError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    return out, build("attention_mesh", out, formats=["onnx"])


def test_onnx_keeps_the_spatial_transformer_as_gridsample(built):
    out, res = built
    proto = onnx.load(str(out / "attention_mesh" / "attention_mesh.onnx"))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("GridSample") == 3
    assert proto.opset_import[0].version == modelzoo.get_spec("attention_mesh").min_onnx_opset == 16
    onnx.checker.check_model(proto, full_check=True)
    spec = modelzoo.get_spec("attention_mesh")
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == [o.name for o in spec.outputs]


def test_build_record_follows_the_contract(built):
    out, res = built
    rec = json.loads((out / "attention_mesh" / "build.json").read_text())
    assert rec["model"] == "attention_mesh" and rec["spec_sha256"] == modelzoo.get_spec("attention_mesh").sha256()
    assert {"torch", "onnx", "onnxruntime"} <= set(rec["tool_versions"])
    (art,) = rec["artifacts"]
    assert art["path"] == "attention_mesh.onnx" and art["format"] == "onnx" and art["precision"] == "fp32"
    assert art["inputs"] == [{"name": "image", "shape": [1, 3, 192, 192], "dtype": "float32", "layout": "NCHW"}]
    assert art["quick_parity"]["seeded"]["landmarks"]["max_abs"] <= 1e-3
    assert art["quick_parity"]["sample_face"]["landmarks"]["max_abs"] <= 1e-3
    assert art["bytes"] == (out / "attention_mesh" / "attention_mesh.onnx").stat().st_size


def test_onnx_matches_pytorch_on_real_faces(built, attention_mesh, golden_batch):
    out, _ = built
    import torch
    with torch.no_grad():
        ref = attention_mesh(golden_batch)
    for i in range(len(golden_batch)):
        with get_runner("onnxruntime")(None, out / "attention_mesh" / "attention_mesh.onnx") as r:
            got = r.run_native({"image": golden_batch[i:i + 1].numpy()})
        assert np.abs(got["landmarks"] - ref["landmarks"][i:i + 1].numpy()).max() <= 1e-3
        assert np.abs(got["face_flag"] - ref["face_flag"][i:i + 1].numpy()).max() <= 1e-4


def test_rebuild_is_cached_and_clean_builds_are_byte_identical(built, tmp_path):
    out, first = built
    assert first.built == ["attention_mesh.onnx"]
    again = build("attention_mesh", out, formats=["onnx"])
    assert again.skipped == ["attention_mesh.onnx"] and not again.built
    other = build("attention_mesh", tmp_path, formats=["onnx"])
    a = (out / "attention_mesh" / "attention_mesh.onnx").read_bytes()
    b = (tmp_path / "attention_mesh" / "attention_mesh.onnx").read_bytes()
    assert a == b and other.built == ["attention_mesh.onnx"]


def test_tampered_artifact_is_rebuilt(built):
    out, _ = built
    path = out / "attention_mesh" / "attention_mesh.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    res = build("attention_mesh", out, formats=["onnx"])
    assert res.built == ["attention_mesh.onnx"]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("call, error", [
    (lambda out: build("no_such_model", out), UnknownModelError),
    (lambda out: build("attention_mesh", out, formats=["coreml"], precisions=["int8"]), ConversionError),
    (lambda out: build("attention_mesh", out, formats=["pytorch"]), ConversionError),
    (lambda out: build("attention_mesh", out, formats=["onnx"], precisions=["int8"]), ConversionError),
])
def test_bad_build_requests_write_nothing(tmp_path, call, error):
    with pytest.raises(error):
        call(tmp_path)
    assert _files(tmp_path) == []


def test_opset_below_the_model_minimum_is_refused(tmp_path):
    spec = modelzoo.get_spec("attention_mesh_paper")
    model = modelzoo.load_model("attention_mesh_paper")
    with pytest.raises(ConversionError, match="opset 13"):
        torch_to_onnx(model, spec, tmp_path / "m.onnx", opset=13)
    assert _files(tmp_path) == []


def test_spec_inconsistent_with_outputs_is_refused(tmp_path):
    spec = modelzoo.get_spec("attention_mesh_paper")
    bad = replace(spec, outputs=spec.outputs[:-1], landmark_outputs=spec.landmark_outputs[:-1])
    with pytest.raises(ConversionError, match="right_iris"):
        torch_to_onnx(modelzoo.load_model("attention_mesh_paper"), bad, tmp_path / "m.onnx")
    assert _files(tmp_path) == []


def test_failing_parity_gate_leaves_no_file(tmp_path):
    """The real model differs from its ONNX export by ~1e-4 px: a zero tolerance must trip."""
    model = modelzoo.load_model("attention_mesh")
    spec_am = modelzoo.get_spec("attention_mesh")
    strict = {k: replace(v, atol=0.0, max_px=0.0) if k[0] == "onnx" else v for k, v in spec_am.tolerances.items()}
    with pytest.raises(ConversionError, match="parity gate"):
        torch_to_onnx(model, replace(spec_am, tolerances=strict), tmp_path / "m.onnx")
    assert _files(tmp_path) == []


def test_partial_rebuild_keeps_other_artifacts_in_the_record(tmp_path):
    build("attention_mesh_paper", tmp_path, formats=["onnx", "coreml"], precisions=["fp32"])
    res = build("attention_mesh_paper", tmp_path, formats=["onnx"])
    record = json.loads((tmp_path / "attention_mesh_paper" / "build.json").read_text())
    assert {a["path"] for a in record["artifacts"]} == {"attention_mesh_paper.onnx",
                                                        "attention_mesh_paper-fp32.mlpackage"}
    assert res.skipped == ["attention_mesh_paper.onnx"]


def test_changed_converter_code_rebuilds(built, monkeypatch):
    """A build made by other converter code (a fixed lowering, say) is not reused."""
    import converters.build as cb
    out, _ = built
    assert build("attention_mesh", out, formats=["onnx"]).skipped == ["attention_mesh.onnx"]
    monkeypatch.setattr(cb, "converters_digest", lambda: "0" * 64)
    assert build("attention_mesh", out, formats=["onnx"]).built == ["attention_mesh.onnx"]
