"""The pipeline bundle's rules without a build: which targets ship after whole-photo parity,
which detector artifact pairs with which landmark artifact, the pipeline block's check, the
I/O contract as a runner spec, and the usage snippets written from an artifact's tensors."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import modelzoo
from artifacts.bundle import pairing, photo_verdicts
from artifacts.card import usage_snippets
from artifacts.manifest import io_contract
from modelzoo.photo.contract import (ContractSpec, PipelineContractError, check_contract, pipeline_contract,
                                     pipeline_options)


def _row(photo, cand, iod, bound=0.06, faces=1):
    return {"photo": photo, "candidate": cand, "faces": faces, "reference_faces": 1, "bound_mean_iod_pct": bound,
            "worst_mean_iod_pct": iod, "passed": iod is not None and iod <= bound and faces == 1}


def test_a_target_ships_only_when_it_passed_on_every_photo():
    parity = {"rows": [_row("a.jpg", "tflite/fp16", 0.02), _row("b.png", "tflite/fp16", 0.03),
                       _row("a.jpg", "coreml/fp16", 0.02), _row("b.png", "coreml/fp16", 0.071),
                       _row("a.jpg", "onnx/fp32", None, faces=0)],
              "skipped": [{"candidate": "tflite/int8", "reason": "no runner"}]}
    shipped, excluded = photo_verdicts(parity)
    assert shipped == {("tflite", "fp16")}
    assert set(excluded) == {"coreml/fp16", "onnx/fp32", "tflite/int8"}
    assert "b.png" in excluded["coreml/fp16"] and "0.071" in excluded["coreml/fp16"]
    assert "0 face(s)" in excluded["onnx/fp32"] and "not run" in excluded["tflite/int8"]
    # The bound is what decides: the same figure under a looser bound ships.
    parity["rows"][3] = _row("b.png", "coreml/fp16", 0.071, bound=0.08)
    assert ("coreml", "fp16") in photo_verdicts(parity)[0]


def test_the_detector_pairs_at_the_same_precision_or_fp32():
    det = {("tflite", "fp32"), ("tflite", "fp16"), ("onnx", "fp32")}
    lm = {("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("onnx", "fp16"), ("coreml", "fp32")}
    p = pairing(det, lm)
    assert p["tflite/fp16"] == {"detector": "tflite/fp16", "landmarks": "tflite/fp16"}
    assert p["tflite/int8"]["detector"] == "tflite/fp32" and p["onnx/fp16"]["detector"] == "onnx/fp32"
    assert "coreml/fp32" not in p                      # no detector of that format: no pair


@pytest.fixture(scope="module")
def block():
    return pipeline_contract(modelzoo.get_spec("face_detector"), modelzoo.get_spec("attention_mesh"))


def test_the_pipeline_block_is_checked_rule_by_rule(block):
    assert check_contract(copy.deepcopy(block), "here") == block
    opts = pipeline_options(block)
    assert opts["detector_size"] == 128 and opts["landmark_size"] == 192
    changed = copy.deepcopy(block)
    changed["rules"]["roi_scale"] = 1.6
    with pytest.raises(PipelineContractError, match="roi_scale"):
        check_contract(changed, "here")
    other = dict(copy.deepcopy(block), contract="someone.else/2")
    with pytest.raises(PipelineContractError, match="someone.else/2"):
        check_contract(other, "here")
    with pytest.raises(PipelineContractError, match="not a face-pipeline bundle"):
        check_contract(None, "here")
    no_rule = copy.deepcopy(block)
    del no_rule["rules"]["landmark_crop"]
    with pytest.raises(PipelineContractError, match="landmark_crop"):
        check_contract(no_rule, "here")


def test_the_io_contract_gives_the_runner_spec_the_zoo_spec_gives():
    spec = modelzoo.get_spec("attention_mesh")
    cs = ContractSpec.from_io_contract(spec.id, io_contract(spec))
    assert cs.inputs == tuple(spec.inputs) and cs.outputs == tuple(spec.outputs)
    assert cs.input(spec.inputs[0].name) == spec.inputs[0]
    with pytest.raises(PipelineContractError, match="corrupt I/O contract"):
        ContractSpec.from_io_contract("x", {"inputs": [{"shape": [1]}], "outputs": []})


def test_usage_snippets_name_the_artifacts_own_tensors():
    spec = modelzoo.get_spec("attention_mesh")
    arts = [{"path": "attention_mesh/attention_mesh-fp16.tflite", "format": "tflite",
             "inputs": [{"name": "image", "shape": [1, 192, 192, 3], "dtype": "float32", "layout": "NHWC"}],
             "outputs": [{"name": "Identity_2", "shape": [1, 478, 3]}, {"name": "face_flag", "shape": [1, 1]}]},
            {"path": "attention_mesh/attention_mesh-fp16.mlpackage", "format": "coreml",
             "inputs": [{"name": "image", "shape": [1, 3, 192, 192], "dtype": "float32", "layout": "NCHW"}],
             "outputs": [{"name": "landmarks", "shape": [1, 478, 3]}]}]
    text = "\n".join(usage_snippets(arts, io_contract(spec)))
    assert '"attention_mesh-fp16.tflite"' in text and "allocateDirect(1 * 192 * 192 * 3 * 4)" in text
    assert "Array(1) { Array(478) { FloatArray(3) } }" in text and 'getOutputIndex("Identity_2")' in text
    assert "MLMultiArray(shape: [1, 3, 192, 192]" in text and 'featureValue(for: "landmarks")' in text
    assert "values in [0, 1]" in text and "RGB" in text
    assert usage_snippets([], io_contract(spec)) == ["No TFLite or Core ML artifact in this version."]


def test_zoo_modules_run_in_the_pipeline_as_they_come(photos):
    """FacePipeline(load_model(...), load_model(...)) on an ndarray: the modules are wrapped."""
    from modelzoo.photo import FacePipeline
    from modelzoo.photo.networks import RunnerNetwork, pytorch_runner
    image = next(iter(photos.values()))
    det = modelzoo.load_model("face_detector", pretrained=True)
    lm = modelzoo.load_model("attention_mesh", pretrained=True)
    got = FacePipeline(det, lm).process(image)
    with pytorch_runner("face_detector") as d, pytorch_runner("attention_mesh") as m:
        want = FacePipeline(RunnerNetwork(d), RunnerNetwork(m)).process(image)
    assert len(got.faces) == len(want.faces) >= 1
    for g, w in zip(got.faces, want.faces):
        np.testing.assert_array_equal(g.landmarks, w.landmarks)
    with pytest.raises(Exception, match="must be callable"):
        FacePipeline(det, 3)
