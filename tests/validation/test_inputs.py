"""The input sets: landmark models are judged on the crops the photo pipeline makes of real
photos, exactly as the PyTorch pipeline makes them."""
from __future__ import annotations

from contextlib import ExitStack

import numpy as np

import modelzoo
from modelzoo.photo import detection_roi, load_image
from modelzoo.photo.networks import open_pipeline
from validation.inputs import PHOTOS, input_sets


def test_landmark_models_get_the_photo_pipelines_crops():
    cases = input_sets(modelzoo.get_spec("attention_mesh"))
    crops = {c.name: c for c in cases if c.kind == "photo-crop"}
    assert set(crops) == {f"{name}-crop" for name, _, _ in PHOTOS}
    assert all(c.is_face and c.array.shape == (1, 3, 192, 192) and c.array.dtype == np.float32
               for c in crops.values())
    with ExitStack() as stack:
        pipe = open_pipeline(stack, "attention_mesh")
        name, path, mirrored = PHOTOS[1]
        image = load_image(path)[:, ::-1] if mirrored else load_image(path)
        image = np.ascontiguousarray(image)
        (det,) = pipe.detect(image)
        np.testing.assert_array_equal(crops[f"{name}-crop"].array, pipe.crop(image, detection_roi(det.box, det.keypoints)))
        for c in crops.values():           # each crop is a face to the landmark model
            assert float(pipe.landmarker(c.array)["face_flag"].reshape(-1)[0]) > 0.9, c.name
    again = {c.name: c.array for c in input_sets(modelzoo.get_spec("attention_mesh")) if c.kind == "photo-crop"}
    assert all(np.array_equal(again[k], crops[k].array) for k in crops)
    assert [c.array.shape[-1] for c in input_sets(modelzoo.get_spec("attention_mesh_paper"))
            if c.kind == "photo-crop"] == [256] * len(PHOTOS)


def test_detectors_get_no_photo_crops():
    assert not [c for c in input_sets(modelzoo.get_spec("face_detector")) if c.kind == "photo-crop"]
