"""The full-range detector's file: its sparse weights densified exactly, and its outputs decoded
with the full-range anchors find the face the short-range detector finds on the sample photo."""
from __future__ import annotations

import numpy as np
import pytest

from modelzoo.data import SAMPLE_PHOTO
from modelzoo.face_detector.anchors import FULL_RANGE, anchor_centres
from modelzoo.face_detector.model import decode_matrices
from modelzoo.face_detector.postprocess import detect, iou
from modelzoo.face_detector.sparse import densify
from modelzoo.fetch import fetch
from modelzoo.photo import letterbox_roi, load_image
from modelzoo.photo.warp import BORDER_ZERO, crop_tensor

FILE = "face_detection_full_range_sparse.tflite"


def _run(buf: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """The .tflite itself on one NCHW [0,1] input (MediaPipe feeds it NHWC in [-1,1])."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=buf)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], (x.transpose(0, 2, 3, 1) * 2 - 1).astype(np.float32))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}


def _decoded(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    reg, cls = raw["Identity"][0].astype(np.float64), raw["Identity_1"][0, :, 0].astype(np.float64)
    mb, ob, mk, ok = decode_matrices(FULL_RANGE)
    return {"boxes": (reg @ mb + ob)[None], "keypoints": (reg @ mk + ok)[None],
            "scores": (1 / (1 + np.exp(-np.clip(cls, -100, 100))))[None]}


@pytest.fixture(scope="module")
def photo_input():
    image = load_image(SAMPLE_PHOTO)
    roi = letterbox_roi((image.shape[1], image.shape[0]))
    return crop_tensor(image, roi, (192, 192), border=BORDER_ZERO)


def test_the_anchor_config_matches_the_file():
    from modelzoo.tflite import TFLiteGraph
    g = TFLiteGraph(densify(fetch(FILE).read_bytes()))
    shapes = {g.tensor(i).name: g.tensor(i).shape for i in g.outputs}
    assert shapes == {"Identity": (1, len(anchor_centres(FULL_RANGE)), 16), "Identity_1": (1, 2304, 1)}
    assert g.tensor(g.inputs[0]).shape == (1, FULL_RANGE.input_size, FULL_RANGE.input_size, 3)
    assert "DENSIFY" not in {op.kind for op in g.ops}


def test_densified_weights_compute_what_the_sparse_file_computes(photo_input):
    buf = fetch(FILE).read_bytes()
    sparse, dense = _run(buf, photo_input), _run(densify(buf), photo_input)
    for name in ("Identity", "Identity_1"):
        np.testing.assert_allclose(dense[name], sparse[name], rtol=0, atol=1e-5)


def test_full_range_anchors_find_the_face_the_short_range_detector_finds(photo_input):
    import modelzoo
    import torch
    from PIL import Image
    dets = detect(_decoded(_run(fetch(FILE).read_bytes(), photo_input)), 0.6)
    assert len(dets) == 1
    short = modelzoo.load_model("face_detector")
    x128 = np.asarray(Image.fromarray((photo_input[0].transpose(1, 2, 0) * 255).round().astype(np.uint8))
                      .resize((128, 128), Image.BILINEAR), np.float32).transpose(2, 0, 1)[None] / 255
    with torch.no_grad():
        ref = detect({k: v.numpy() for k, v in short(torch.from_numpy(x128)).items()})
    ref_box = ref[0].box * 192 / 128
    assert iou(dets[0].box, ref_box[None])[0] > 0.7, (dets[0].box, ref_box)
    assert np.abs(dets[0].keypoints - ref[0].keypoints * 192 / 128).max() < 6


def test_a_face_under_a_tenth_of_the_frame_is_found_by_full_range_and_missed_by_short_range():
    """Measured on the sample photo pasted into a grey 1024² canvas: short range finds the face
    down to ~11% of the frame's width and misses it at 7.6%; full range finds it down to ~4%."""
    from PIL import Image

    from modelzoo.photo import FacePipeline
    from modelzoo.photo.networks import RunnerNetwork, pytorch_runner
    photo = Image.fromarray(load_image(SAMPLE_PHOTO))
    canvas = Image.new("RGB", (1024, 1024), (128, 128, 128))
    canvas.paste(photo.resize((photo.size[0] * 2 // 5, photo.size[1] * 2 // 5), Image.BILINEAR), (340, 256))
    image = np.asarray(canvas)
    buf = fetch(FILE).read_bytes()
    full = FacePipeline(lambda x: _decoded(_run(buf, x)), None, detector_size=192, min_score=0.6)
    (found,) = full.detect(image)
    width = (found.box[2] - found.box[0]) / image.shape[1]
    assert width < 0.1
    assert 340 < found.box[0] < found.box[2] < 340 + photo.size[0] * 2 // 5
    with pytorch_runner("face_detector") as r:
        short = FacePipeline(RunnerNetwork(r), None, detector_size=128)
        assert short.detect(image) == []
        assert len(short.detect(np.asarray(photo))) == 1
