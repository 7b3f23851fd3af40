"""The comparator's landmark figures come from the spec: its regions, its IOD pair, its
landmark output; a spec without landmarks gets no region or %IOD figures."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import modelzoo
from modelzoo.spec import LandmarkSpec, ModelSpec, TensorSpec, Tolerance
from validation.compare import EdgeResult, compare, regions, worst_by_candidate

TEN = LandmarkSpec(output="pts", points=10, regions={"all": tuple(range(10)), "left": (0, 1, 2, 3, 4),
                                                     "right": (5, 6, 7, 8, 9)}, iod_pair=(2, 7))


def toy_spec(landmarks: LandmarkSpec | None = TEN, landmark_outputs: tuple[str, ...] = ("pts",)) -> ModelSpec:
    # "score" first: the landmark output is found by the spec, not by its position or name.
    return ModelSpec(id="toy", description="ten points", preprocessing="none",
                     inputs=(TensorSpec("x", (None, 3, 8, 8), layout="NCHW"),),
                     outputs=(TensorSpec("score", (None, 1)), TensorSpec("pts", (None, 10, 3))),
                     tolerances={("onnx", "fp32", "*"): Tolerance(atol=1.0, max_px=1.0, mean_iod_pct=1.0)},
                     landmark_outputs=landmark_outputs, landmarks=landmarks)


def _pair() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reference with IOD 20 (points 2 and 7); the candidate moves point 3 by 0.5 px."""
    pts = np.arange(30, dtype=np.float32).reshape(1, 10, 3)
    pts[0, 2, :2], pts[0, 7, :2] = (10.0, 10.0), (22.0, 26.0)
    got = pts.copy()
    got[0, 3, :2] += (0.3, 0.4)
    score = np.array([[0.9]], np.float32)
    return {"score": score, "pts": pts}, {"score": score, "pts": got}


def test_a_toy_spec_gets_exactly_its_regions_and_its_own_iod():
    ref, got = _pair()
    results = {r.name: r for r in compare(toy_spec(), "onnx", "fp32", ref, got, is_face=True)}
    lm = results["pts"].landmarks
    assert list(lm) == ["all", "left", "right"]
    assert lm["left"]["max_px"] == pytest.approx(0.5) and lm["left"]["mean_px"] == pytest.approx(0.1)
    assert lm["right"]["max_px"] == 0.0 and lm["all"]["mean_px"] == pytest.approx(0.05)
    assert lm["all"]["mean_iod_pct"] == pytest.approx(100 * 0.05 / 20)
    assert lm["left"]["mean_iod_pct"] == pytest.approx(100 * 0.1 / 20)
    assert results["score"].landmarks is None and all(r.passed for r in results.values())
    # A 0.4% IOD bound fails the left region alone (0.5%; all 0.25%, right 0%).
    tight = replace(toy_spec(), tolerances={("onnx", "fp32", "*"): Tolerance(atol=1.0, max_px=1.0,
                                                                             mean_iod_pct=0.4)})
    failing = {r.name: r for r in compare(tight, "onnx", "fp32", ref, got, is_face=True)}["pts"]
    assert not failing.passed and failing.failures == ["left: mean 0.5% IOD > 0.4%"]


def test_another_iod_pair_gives_another_iod():
    ref, got = _pair()
    spec = toy_spec(replace(TEN, iod_pair=(0, 9)))
    a = ref["pts"][0]
    iod = float(np.hypot(*(a[0, :2] - a[9, :2])))
    lm = {r.name: r for r in compare(spec, "onnx", "fp32", ref, got, is_face=True)}["pts"].landmarks
    assert lm["all"]["mean_iod_pct"] == pytest.approx(100 * 0.05 / iod)


def test_no_iod_off_a_face_or_without_a_pair():
    ref, got = _pair()
    for spec, face in ((toy_spec(), False), (toy_spec(replace(TEN, iod_pair=None)), True)):
        lm = {r.name: r for r in compare(spec, "onnx", "fp32", ref, got, is_face=face)}["pts"].landmarks
        assert list(lm) == ["all", "left", "right"] and all(m["mean_iod_pct"] is None for m in lm.values())


def test_a_spec_without_landmarks_gets_no_regions_and_no_iod():
    ref, got = _pair()
    spec = toy_spec(landmarks=None)
    assert regions(spec) == {}
    lm = {r.name: r for r in compare(spec, "onnx", "fp32", ref, got, is_face=True)}["pts"].landmarks
    assert list(lm) == ["all"] and lm["all"]["mean_iod_pct"] is None          # px bounds only
    plain = toy_spec(landmarks=None, landmark_outputs=())
    assert all(r.landmarks is None for r in compare(plain, "onnx", "fp32", ref, got, is_face=True))


def test_the_detector_gets_no_landmark_figures():
    spec = modelzoo.get_spec("face_detector")
    assert spec.landmarks is None and regions(spec) == {}
    rng = np.random.default_rng(0)
    ref = {o.name: rng.random([1 if d is None else d for d in o.shape]).astype(np.float32) for o in spec.outputs}
    results = compare(spec, "onnx", "fp32", ref, ref, is_face=True)
    assert [r.landmarks for r in results] == [None] * len(spec.outputs)


def test_worst_by_candidate_reads_the_spec_landmark_output():
    ref, got = _pair()
    spec = toy_spec()
    edge = EdgeResult("pytorch", "toy.onnx@onnxruntime", "onnx", "fp32", "face", "face",
                      compare(spec, "onnx", "fp32", ref, got, is_face=True))
    w = worst_by_candidate([edge], spec)["toy.onnx@onnxruntime"]
    assert w["max_px"] == pytest.approx(0.5) and w["iod"] == pytest.approx(100 * 0.05 / 20)
    none = worst_by_candidate([edge], toy_spec(landmarks=None))["toy.onnx@onnxruntime"]
    assert none["max_px"] == 0.0 and none["iod"] is None


def test_zoo_regions_are_the_478_contract():
    from modelzoo.attention_mesh.regions import LEFT_EYE, LIPS, RIGHT_EYE
    for model_id in ("attention_mesh", "attention_mesh_paper", "face_mesh_cascade"):
        r = regions(modelzoo.get_spec(model_id))
        assert r == {"all": list(range(478)), "lips": list(LIPS), "eyes": sorted(set(LEFT_EYE) | set(RIGHT_EYE)),
                     "iris": list(range(468, 478))}
