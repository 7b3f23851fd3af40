"""face_detector_full through the normal pipeline: `build` makes every format it targets (the
TFLite artifacts pass the GPU check) and `validate` passes on all of them."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

MODEL = "face_detector_full"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from converters.build import build
    out = tmp_path_factory.mktemp("face_detector_full_build")
    build(MODEL, out)
    return out / MODEL


def test_it_builds_gpu_clean_and_validates_on_every_format(built):
    from validation.validate import require_passed, validate
    v = validate(MODEL, built.parent)
    require_passed(v)
    candidates = {e.candidate.split("@")[0] for e in v.edges if e.reference == "pytorch"}
    assert candidates == {f"{MODEL}.onnx", f"{MODEL}-fp32.tflite", f"{MODEL}-fp16.tflite",
                          f"{MODEL}-fp32.mlpackage", f"{MODEL}-fp16.mlpackage"}
    data = json.loads((v.root / "parity.json").read_text())
    assert data["gpu_check"] and all(g["ok"] and not g["flagged"] for g in data["gpu_check"].values())
    face = next(e for e in data["edges"] if e["candidate"] == f"{MODEL}-fp32.tflite@tflite"
                and e["input_kind"] == "face")
    assert face["outputs"]["boxes"]["max_abs"] <= 1e-3 and face["outputs"]["scores"]["max_abs"] <= 1e-3
    record = json.loads((built / "build.json").read_text())
    tflite = [a for a in record["artifacts"] if a["format"] == "tflite"]
    # The file's resize and depth-to-space are written as gathers: no 6-D transposes, no resize.
    assert tflite and all("RESIZE_BILINEAR" not in a["op_counts"] and "TRANSPOSE" not in a["op_counts"]
                          for a in tflite)

