"""The spec's landmark section and localisation points: validated on construction, part of the
spec hash, and true of every zoo model."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import modelzoo
from modelzoo.spec import LandmarkSpec, ModelSpec, TensorSpec, Tolerance

TEN = LandmarkSpec(output="pts", points=10, regions={"all": tuple(range(10)), "left": (0, 1, 2, 3, 4),
                                                     "right": (5, 6, 7, 8, 9)}, iod_pair=(2, 7))


def toy_spec(landmarks: LandmarkSpec | None = TEN, points: tuple[str, ...] = ("Block",)) -> ModelSpec:
    return ModelSpec(id="toy", description="ten points", preprocessing="none",
                     inputs=(TensorSpec("x", (None, 3, 8, 8), layout="NCHW"),),
                     outputs=(TensorSpec("pts", (None, 10, 3)), TensorSpec("score", (None, 1))),
                     tolerances={("onnx", "fp32", "*"): Tolerance(atol=1e-3, max_px=1e-3)},
                     landmark_outputs=("pts",), landmarks=landmarks, localisation_points=points)


def test_iod_is_the_declared_pair():
    pts = np.zeros((10, 3))
    pts[2, :2], pts[7, :2] = (1.0, 1.0), (4.0, 5.0)
    assert TEN.inter_ocular_distance(pts) == 5.0 and TEN.inter_ocular_distance(pts[None]) == 5.0
    assert replace(TEN, iod_pair=(0, 7)).inter_ocular_distance(pts) == pytest.approx(np.hypot(4, 5))
    assert replace(TEN, iod_pair=None).inter_ocular_distance(pts) is None
    assert TEN.inter_ocular_distance(np.zeros((478, 3))) is None          # another point count


@pytest.mark.parametrize("change", [
    lambda s: replace(s, landmarks=replace(TEN, regions={**TEN.regions, "left": (0, 1, 2, 3)})),
    lambda s: replace(s, landmarks=replace(TEN, regions={"all": TEN.regions["all"], "right": TEN.regions["right"],
                                                         "left": TEN.regions["left"]})),   # order of the figures
    lambda s: replace(s, landmarks=replace(TEN, iod_pair=(3, 7))),
    lambda s: replace(s, landmarks=None),
    lambda s: replace(s, localisation_points=("Block", "Sampler")),
])
def test_every_landmark_field_is_in_the_spec_hash(change):
    spec = toy_spec()
    assert spec.sha256() == toy_spec().sha256()
    assert change(spec).sha256() != spec.sha256()


def test_landmark_spec_is_in_to_dict():
    d = toy_spec().to_dict()
    assert d["landmarks"] == {"output": "pts", "points": 10, "iod_pair": [2, 7],
                              "regions": [["all", list(range(10))], ["left", [0, 1, 2, 3, 4]],
                                          ["right", [5, 6, 7, 8, 9]]]}
    assert d["localisation_points"] == ("Block",)


@pytest.mark.parametrize("kwargs, match", [
    ({"regions": {"left": (0, 1)}}, "'all'"),
    ({"regions": {"all": tuple(range(10)), "left": (0, 10)}}, "outside"),
    ({"regions": {"all": tuple(range(10)), "left": (1, 1)}}, "twice"),
    ({"regions": {"all": tuple(range(10)), "left": ()}}, "empty"),
    ({"iod_pair": (3, 3)}, "iod_pair"),
    ({"iod_pair": (3, 10)}, "iod_pair"),
])
def test_bad_landmark_sections_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        replace(TEN, **kwargs)


def test_spec_checks_its_landmarks_against_its_outputs():
    with pytest.raises(ValueError, match="not among the landmark outputs"):
        toy_spec(replace(TEN, output="score"))
    with pytest.raises(ValueError, match="shape"):
        toy_spec(replace(TEN, points=12, regions={"all": tuple(range(12))}, iod_pair=None))
    with pytest.raises(ValueError, match="localisation_points"):
        toy_spec(points="Block")


@pytest.mark.parametrize("model_id", modelzoo.list_models())
def test_zoo_landmarks_fit_the_outputs_and_points_name_modules(model_id):
    spec = modelzoo.get_spec(model_id)
    if spec.landmark_outputs:
        lm = spec.landmarks
        assert lm is not None and lm.output == "landmarks" and lm.points == 478
        assert set(lm.regions) == {"all", "lips", "eyes", "iris"} and lm.iod_pair == (33, 263)
    else:
        assert spec.landmarks is None
    model = modelzoo.load_model(model_id, pretrained=False)
    names = {n for n, _ in model.named_modules()} | {type(m).__name__ for _, m in model.named_modules()}
    assert spec.localisation_points and set(spec.localisation_points) <= names, spec.localisation_points
