"""torch → Core ML, checked on Linux through the MIL reference evaluator."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import modelzoo
from converters import ConversionError
from converters.coreml import torch_to_coreml
from converters.build import build
from runtime.mil import MILProgram

IOD = (33, 263)


@pytest.mark.slow
def test_coreml_programs_use_resample_and_match_pytorch(full_build, attention_mesh, golden_batch):
    root, _ = full_build
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in attention_mesh(golden_batch).items()}
    for precision, bound in (("fp32", None), ("fp16", 0.05)):
        prog = MILProgram(root / f"attention_mesh-{precision}.mlpackage")
        assert "resample" in prog.op_types and "affine" not in prog.op_types
        assert prog.input_names == ["image"]
        assert prog.output_names == [o.name for o in modelzoo.get_spec("attention_mesh").outputs]
        for i in range(len(golden_batch)):
            got = prog.run({"image": golden_batch[i:i + 1].numpy()})
            lm, want = got["landmarks"][0].astype(np.float64), ref["landmarks"][i]
            if bound is None:
                assert np.abs(lm - want).max() <= 1e-3
            else:
                iod = np.linalg.norm(want[IOD[0], :2] - want[IOD[1], :2])
                assert 100 * np.linalg.norm(lm[:, :2] - want[:, :2], axis=-1).mean() / iod <= bound


@pytest.mark.slow
def test_coreml_metadata_comes_from_the_spec(full_build):
    import coremltools as ct
    root, _ = full_build
    spec = modelzoo.get_spec("attention_mesh")
    ml = ct.models.MLModel(str(root / "attention_mesh-fp16.mlpackage"), skip_model_load=True)
    assert ml.author == "Meshport" and ml.license == "Apache-2.0"
    assert ml.short_description == spec.description
    assert "MediaPipe" in ml.user_defined_metadata["attribution"]
    assert ml.user_defined_metadata["spec_sha256"] == spec.sha256()
    desc = ml.get_spec().description
    assert [o.name for o in desc.output] == [o.name for o in spec.outputs]
    assert "face presence" in {o.name: o.shortDescription for o in desc.output}["face_flag"]
    record = json.loads((root / "build.json").read_text())
    mil = [a for a in record["artifacts"] if a["format"] == "coreml"]
    assert {a["precision"] for a in mil} == {"fp32", "fp16"}
    assert all(a["quick_parity"]["sample_face"]["landmarks"]["max_abs"] < 1 for a in mil)


@pytest.mark.slow
def test_clean_builds_are_byte_identical(full_build, tmp_path):
    """ONNX and Core ML rebuilt from scratch give the same bytes (TFLite: see the README)."""
    root, _ = full_build
    build("attention_mesh", tmp_path, formats=["onnx", "coreml"])
    first = {a["path"]: a["sha256"] for a in json.loads((root / "build.json").read_text())["artifacts"]}
    second = {a["path"]: a["sha256"] for a in
              json.loads((tmp_path / "attention_mesh" / "build.json").read_text())["artifacts"]}
    assert second and all(first[k] == v for k, v in second.items())


def test_unsupported_coreml_precision(tmp_path):
    with pytest.raises(ConversionError, match="unsupported Core ML precision"):
        torch_to_coreml(modelzoo.load_model("attention_mesh_paper"), modelzoo.get_spec("attention_mesh_paper"),
                                  {"int8": tmp_path / "m.mlpackage"})
    assert not any(tmp_path.iterdir())
