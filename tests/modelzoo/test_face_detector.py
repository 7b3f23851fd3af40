"""face_detector: anchors and decoding by hand, imported weights against MediaPipe's own
.tflite, weighted NMS by hand, and detections against MediaPipe's (golden) on two photos."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import modelzoo
from modelzoo.errors import WeightImportError
from modelzoo.face_detector import AnchorConfig, BlazeFace, anchor_centres, detect, weighted_nms
from modelzoo.face_detector.model import decode_matrices
from modelzoo.face_detector.weights import import_blazeface, load_from_file
from modelzoo.fetch import fetch
from modelzoo.tflite import TFLiteGraph


@pytest.fixture(scope="module")
def detector():
    return modelzoo.load_model("face_detector")


def test_anchor_centres_by_hand():
    a = anchor_centres()
    assert a.shape == (896, 2)
    # stride 8: 16×16 cells × 2 anchors, then stride 16 (three layers): 8×8 cells × 6 anchors
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_array_equal(a[0], a[1])                  # two anchors per cell
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])      # next cell along x
    np.testing.assert_allclose(a[32], [0.5 / 16, 1.5 / 16])     # next row
    np.testing.assert_allclose(a[511], [15.5 / 16, 15.5 / 16])
    np.testing.assert_allclose(a[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])
    assert AnchorConfig(num_layers=2, strides=(8, 16)).anchors_per_cell() == {8: 2, 16: 2}


def test_decoding_by_hand():
    mb, ob, mk, ok = decode_matrices()
    r = np.zeros(16, np.float32)
    r[:4] = [3.0, -2.0, 40.0, 20.0]          # centre offset (3, −2) px, size 40×20
    r[4:6] = [-5.0, 1.0]                      # keypoint 0 offset
    anchor = anchor_centres()[600] * 128      # an 8×8-map anchor
    box = r @ mb + ob[600]
    cx, cy = anchor + [3.0, -2.0]
    np.testing.assert_allclose(box, [cx - 20, cy - 10, cx + 20, cy + 10], rtol=1e-6)
    kps = (r @ mk + ok[600]).reshape(6, 2)
    np.testing.assert_allclose(kps[0], anchor + [-5.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(kps[1:], np.tile(anchor, (5, 1)), rtol=1e-6)


def _mediapipe_raw(x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(fetch("face_detection_short_range.tflite")))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray((x_nchw * 2 - 1).transpose(0, 2, 3, 1)))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}


@pytest.mark.parametrize("which", ["face", "seeded"])
def test_imported_weights_reproduce_mediapipe_raw_outputs(detector, which):
    from modelzoo.data import sample_face
    x = sample_face(128) if which == "face" else np.random.default_rng(3).random((1, 3, 128, 128), np.float32)
    want = _mediapipe_raw(x)
    with torch.no_grad():
        reg, cls = detector.raw(torch.from_numpy(x))
    np.testing.assert_allclose(reg.numpy(), want["regressors"], atol=2e-4)
    np.testing.assert_allclose(cls.numpy(), want["classificators"], atol=2e-4)
    if which == "face":
        assert cls.max() > 1.0                 # the sample face scores > 0.73


@pytest.mark.parametrize("model_id", ["face_detector", "face_detector_full"])
def test_outputs_follow_the_spec(model_id):
    """Both detectors: one output contract, shapes from their specs, the input contract enforced."""
    detector = modelzoo.load_model(model_id, pretrained=False)
    spec = modelzoo.get_spec(model_id)
    size = spec.inputs[0].shape[-1]
    with torch.no_grad():
        out = detector(torch.rand(2, 3, size, size))
    assert set(out) == {o.name for o in spec.outputs} == {"boxes", "keypoints", "scores"}
    for o in spec.outputs:
        assert tuple(out[o.name].shape) == tuple(2 if d is None else d for d in o.shape)
    assert float(out["scores"].min()) >= 0 and float(out["scores"].max()) <= 1
    with pytest.raises(modelzoo.InputContractError):
        detector(torch.rand(1, size, size, 3))
    with pytest.raises(modelzoo.InputContractError):
        detector(torch.rand(1, 3, size + 64, size + 64))


def test_topology_mismatch_is_refused():
    other = BlazeFace(modelzoo.get_spec("face_detector").input("image"),
                      AnchorConfig(num_layers=3, strides=(8, 16, 16)))
    with pytest.raises(WeightImportError, match="anchors"):
        import_blazeface(TFLiteGraph.load(fetch("face_detection_short_range.tflite")), other)
    model = modelzoo.load_model("face_detector", pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightImportError):
        load_from_file(model, fetch("face_landmark_with_attention.tflite"))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_weighted_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], float)
    kps = np.arange(4 * 6 * 2, dtype=float).reshape(4, 6, 2)
    scores = np.array([0.9, 0.6, 0.8, 0.3])
    dets = weighted_nms(boxes, kps, scores, iou_threshold=0.3)
    assert [round(d.score, 3) for d in dets] == [0.9, 0.8]
    group = [0, 1, 3]                           # IoU(0,1) = 81/119 = 0.68, IoU(0,3) = 0.95
    w = scores[group] / scores[group].sum()
    np.testing.assert_allclose(dets[0].box, (boxes[group] * w[:, None]).sum(0))
    np.testing.assert_allclose(dets[0].keypoints, (kps[group] * w[:, None, None]).sum(0))
    np.testing.assert_allclose(dets[1].box, boxes[2])
    # above the IoU threshold only: boxes touching at 0.25 IoU stay apart
    apart = weighted_nms(np.array([[0, 0, 10, 10], [5, 0, 15, 10.0]]), kps[:2], np.array([0.9, 0.8]), 0.34)
    assert len(apart) == 2


def test_detect_applies_the_score_threshold():
    out = {"boxes": np.tile([[[0, 0, 10, 10]]], (1, 3, 1)).astype(np.float32),
           "keypoints": np.zeros((1, 3, 12), np.float32), "scores": np.array([[0.49, 0.5, 0.2]], np.float32)}
    dets = detect(out, min_score=0.5)
    assert len(dets) == 1 and dets[0].score == pytest.approx(0.5)
    assert detect(out, min_score=0.6) == []
    out["boxes"][0, 1] = [10, 0, 0, 10]                     # negative width: dropped, like MediaPipe
    assert detect(out, min_score=0.5) == []
