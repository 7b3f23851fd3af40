"""The full-range detector: its file (sparse weights densified exactly, outputs decoded with the
full-range anchors), the PyTorch model against the file's interpreter (raw outputs to an fp32
bound, detections on photos), the import refusing other files, and the face sizes each
detector finds."""
from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import modelzoo
from modelzoo.data import SAMPLE_PHOTO
from modelzoo.errors import WeightImportError
from modelzoo.face_detector.anchors import FULL_RANGE, anchor_centres, decode_matrices
from modelzoo.face_detector.full_range import BlazeFaceFullRange, depth_to_space_order, upsample2
from modelzoo.face_detector.model import flat_head
from modelzoo.face_detector.postprocess import detect, iou
from modelzoo.face_detector.sparse import densify
from modelzoo.face_detector.weights_full import import_full_range, load_from_bytes, load_from_file
from modelzoo.fetch import fetch
from modelzoo.photo import FacePipeline, letterbox_roi, load_image
from modelzoo.photo.networks import open_pipeline
from modelzoo.photo.warp import BORDER_ZERO, crop_tensor
from modelzoo.tflite import TFLiteGraph

FILE = "face_detection_full_range_sparse.tflite"
EPS32 = float(np.finfo(np.float32).eps)


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


def fp32_bound(model: nn.Module, want: np.ndarray) -> float:
    """How far two fp32 evaluations of `model` may drift apart on an output: one fp32 rounding
    of the output's scale per convolution of the model (every convolution rounds its sums, and
    the two runtimes order those sums differently)."""
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    return convs * EPS32 * float(np.abs(want).max())


def assert_fp32_equal(model: nn.Module, got: np.ndarray, want: np.ndarray, what: str) -> None:
    bound = fp32_bound(model, want)
    err = float(np.abs(got - want).max())
    assert err <= bound, f"{what}: max |Δ| {err:.3g} above the fp32 bound {bound:.3g}"


@pytest.fixture(scope="module")
def dense() -> bytes:
    return densify(fetch(FILE).read_bytes())


@pytest.fixture(scope="module")
def full():
    return modelzoo.load_model("face_detector_full")


@pytest.fixture(scope="module")
def photo_input():
    image = load_image(SAMPLE_PHOTO)
    roi = letterbox_roi((image.shape[1], image.shape[0]))
    return crop_tensor(image, roi, (192, 192), border=BORDER_ZERO)


def small_face_image(scale: float = 0.4) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The sample photo scaled by `scale`, pasted into a grey 1024² canvas at (340, 256); and
    where it lies (x0, y0, x1, y1)."""
    from PIL import Image
    photo = Image.fromarray(load_image(SAMPLE_PHOTO))
    size = (round(photo.size[0] * scale), round(photo.size[1] * scale))
    canvas = Image.new("RGB", (1024, 1024), (128, 128, 128))
    canvas.paste(photo.resize(size, Image.BILINEAR), (340, 256))
    return np.asarray(canvas), (340, 256, 340 + size[0], 256 + size[1])


def two_faces_image() -> tuple[np.ndarray, tuple[int, int, int, int], tuple[int, int, int, int]]:
    """A 1024² canvas with the sample photo at full size on the left (its face ~19% of the width)
    and at 0.4× on the right (~7.6%); and where each lies."""
    from PIL import Image
    photo = Image.fromarray(load_image(SAMPLE_PHOTO))
    canvas = Image.new("RGB", (1024, 1024), (128, 128, 128))
    canvas.paste(photo, (40, 200))
    small = photo.resize((round(photo.size[0] * 0.4), round(photo.size[1] * 0.4)), Image.BILINEAR)
    canvas.paste(small, (700, 400))
    return np.asarray(canvas), (40, 200, 40 + photo.size[0], 200 + photo.size[1]), \
        (700, 400, 700 + small.size[0], 400 + small.size[1])


def inside(box: np.ndarray, where: tuple[int, int, int, int]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return where[0] <= cx <= where[2] and where[1] <= cy <= where[3]


# -- the file ------------------------------------------------------------------------------

def test_the_anchor_config_matches_the_file(dense):
    g = TFLiteGraph(dense)
    shapes = {g.tensor(i).name: g.tensor(i).shape for i in g.outputs}
    assert shapes == {"Identity": (1, len(anchor_centres(FULL_RANGE)), 16), "Identity_1": (1, 2304, 1)}
    assert g.tensor(g.inputs[0]).shape == (1, FULL_RANGE.input_size, FULL_RANGE.input_size, 3)
    assert "DENSIFY" not in {op.kind for op in g.ops}


def test_densified_weights_compute_what_the_sparse_file_computes(photo_input, dense):
    sparse, dense_out = _run(fetch(FILE).read_bytes(), photo_input), _run(dense, photo_input)
    for name in ("Identity", "Identity_1"):
        np.testing.assert_allclose(dense_out[name], sparse[name], rtol=0, atol=1e-5)


def test_full_range_anchors_find_the_face_the_short_range_detector_finds(photo_input):
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


# -- the PyTorch model against the file -----------------------------------------------------

def test_the_heads_row_gather_is_tflites_depth_to_space():
    """TFLite DEPTH_TO_SPACE (NHWC): out[b·y+i, b·x+j, c] = in[y, x, (i·b+j)·k + c], by hand,
    against the Head's flatten + gather."""
    k, b, h, w = 3, 2, 5, 7
    x = torch.randn(2, k * b * b, h, w)
    got = flat_head(x, k).index_select(1, torch.tensor(depth_to_space_order(h, w, k, b), dtype=torch.int32))
    nhwc = x.permute(0, 2, 3, 1).numpy()
    want = np.zeros((2, b * h, b * w, k), np.float32)
    for y in range(h):
        for xx in range(w):
            for i in range(b):
                for j in range(b):
                    want[:, b * y + i, b * xx + j, :] = nhwc[:, y, xx, (i * b + j) * k:(i * b + j + 1) * k]
    np.testing.assert_array_equal(got.numpy(), want.reshape(2, -1, k))


@pytest.mark.parametrize("hw", [(6, 6), (5, 8), (1, 3)])
def test_the_gathered_upsample_is_bilinear_with_half_pixel_centres(hw):
    """Against torch's bilinear (align_corners=False: half-pixel centres, clamped at the
    border, as TFLite's RESIZE_BILINEAR half_pixel_centers); the fp32 sums differ in order only."""
    x = torch.randn(2, 3, *hw)
    want = F.interpolate(x, size=(2 * hw[0], 2 * hw[1]), mode="bilinear", align_corners=False)
    err = float((upsample2(x) - want).abs().max())
    assert err <= 4 * EPS32 * float(want.abs().max())
    assert float((upsample2(x.flip(-1)).flip(-1) - want).abs().max()) <= 4 * EPS32 * float(want.abs().max())
    nearest = F.interpolate(x, size=(2 * hw[0], 2 * hw[1]), mode="nearest")
    assert float((upsample2(x) - nearest).abs().max()) > 0.01          # the check tells bilinear from nearest


@pytest.mark.parametrize("which", ["photo", "seeded-0", "seeded-1", "seeded-2"])
def test_pytorch_raw_outputs_equal_the_files(full, dense, photo_input, which):
    x = photo_input if which == "photo" else \
        np.random.default_rng(int(which[-1])).random((1, 3, 192, 192), np.float32)
    want = _run(dense, x)
    with torch.no_grad():
        reg, cls = full.raw(torch.from_numpy(x))
    assert_fp32_equal(full, reg.numpy(), want["Identity"], "regressors")
    assert_fp32_equal(full, cls.numpy(), want["Identity_1"], "score logits")
    if which == "photo":
        assert cls.max() > 1.0


def test_the_fp32_bound_fails_on_a_shifted_output(full, dense, photo_input):
    want = _run(dense, photo_input)
    with torch.no_grad():
        reg, cls = full.raw(torch.from_numpy(photo_input))
    for got, ref, what in ((reg.numpy(), want["Identity"], "regressors"), (cls.numpy(), want["Identity_1"], "logits")):
        shifted = got.copy()
        shifted.reshape(-1)[123] += 2 * fp32_bound(full, ref)
        with pytest.raises(AssertionError, match="fp32 bound"):
            assert_fp32_equal(full, shifted, ref, what)


def test_decoded_outputs_equal_the_files_decoded(full, dense, photo_input):
    with torch.no_grad():
        got = {k: v.numpy() for k, v in full(torch.from_numpy(photo_input)).items()}
    want = _decoded(_run(dense, photo_input))
    for name in ("boxes", "keypoints"):
        assert_fp32_equal(full, got[name], want[name], name)
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("image", ["photo", "small-face"])
def test_it_finds_the_faces_the_file_finds(dense, image):
    img = load_image(SAMPLE_PHOTO) if image == "photo" else small_face_image()[0]
    with ExitStack() as stack:
        pipe = open_pipeline(stack, detector="face_detector_full")
        assert pipe.detector_size == 192
        got = pipe.detect(img)
        file_pipe = FacePipeline(lambda x: _decoded(_run(dense, x)), pipe.landmarker, detector_size=192)
        want = file_pipe.detect(img)
    assert len(got) == len(want) >= 1
    for g, w in zip(got, want):
        assert iou(g.box, w.box[None])[0] > 0.999 and abs(g.score - w.score) < 1e-4
        np.testing.assert_allclose(g.keypoints, w.keypoints, atol=0.05)   # image pixels of a 1024-px frame


def test_a_face_under_a_tenth_of_the_frame_is_found_by_full_range_and_missed_by_short_range():
    """Measured on the sample photo pasted into a grey 1024² canvas: short range finds the face
    down to ~10% of the frame's width and misses it at 7.6%; full range finds it down to ~4%."""
    image, where = small_face_image()
    with ExitStack() as stack:
        full = open_pipeline(stack, detector="face_detector_full")
        (found,) = full.detect(image)
        assert (found.box[2] - found.box[0]) / image.shape[1] < 0.1
        assert inside(found.box, where)
        short = open_pipeline(stack, detector="face_detector")
        assert short.detector_size == 128
        assert short.detect(image) == []
        assert len(short.detect(load_image(SAMPLE_PHOTO))) == 1


def test_the_photo_pipeline_with_each_detector_on_a_large_and_a_small_face():
    image, large, small = two_faces_image()
    found = {}
    with ExitStack() as stack:
        for detector in ("face_detector", "face_detector_full"):
            result = open_pipeline(stack, detector=detector).process(image)
            found[detector] = [(inside(f.box, large), inside(f.box, small)) for f in result.faces]
            assert all(f.face_flag >= 0.5 and f.landmarks.shape == (478, 3) for f in result.faces)
    assert found["face_detector"] == [(True, False)]
    assert found["face_detector_full"] == [(True, False), (False, True)]     # largest box first


# -- import errors ----------------------------------------------------------------------------

def test_other_files_are_refused_and_the_model_is_left_untouched():
    model = modelzoo.load_model("face_detector_full", pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightImportError, match="shape"):
        load_from_file(model, fetch("face_detection_short_range.tflite"))
    with pytest.raises(WeightImportError):
        load_from_file(model, fetch("face_landmark_with_attention.tflite"))
    with pytest.raises(WeightImportError):
        load_from_bytes(model, b"not a tflite file")
    with pytest.raises(WeightImportError, match="cannot read"):
        load_from_file(model, "/nonexistent/face_detection_full_range_sparse.tflite")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_topology_that_differs_from_the_file_is_refused(dense):
    spec = modelzoo.get_spec("face_detector_full")
    with pytest.raises(ValueError, match="stride-4"):
        BlazeFaceFullRange(spec.input("image"), FULL_RANGE.__class__(input_size=192, num_layers=1, strides=(8,)))
    other = BlazeFaceFullRange(spec.input("image"))
    other.top_down[2].append(type(other.top_down[2][0])(48, 24, 48))     # one block more than the file has
    with pytest.raises(WeightImportError):
        import_full_range(TFLiteGraph(dense), other)
