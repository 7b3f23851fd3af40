"""The photo pipeline: ROI geometry and the crop warp by hand, then whole photos against
MediaPipe's own full-image FaceMesh and FaceDetection (golden), and every awkward input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from modelzoo.errors import InputContractError
from modelzoo.photo import FaceTracker, Roi, crop_tensor, detection_roi, landmarks_roi, letterbox_roi, load_image
from modelzoo.photo.warp import BORDER_ZERO, warp_matrix


def iod_error_pct(lm: np.ndarray, ref: np.ndarray) -> float:
    """Mean 2-D landmark error as % of the reference's inter-ocular distance (33–263)."""
    iod = np.linalg.norm(ref[33, :2] - ref[263, :2])
    return float(100 * np.linalg.norm(lm[:, :2] - ref[:, :2], axis=1).mean() / iod)


# -- geometry by hand -------------------------------------------------------------------------
def test_roi_projection_by_hand():
    roi = Roi(100.0, 50.0, 40.0, 20.0, math.pi / 2)       # a quarter turn clockwise on screen
    # tensor (u, v) → centre + R(90°)·((u/W − ½)·40, (v/H − ½)·20); R(90°)(x, y) = (−y, x)
    pts = roi.to_image(np.array([[0.0, 0.0, 8.0], [10.0, 5.0, 0.0], [5.0, 10.0, -4.0]]), (10, 10))
    np.testing.assert_allclose(pts, [[110.0, 30.0, 32.0], [100.0, 70.0, 0.0], [90.0, 50.0, -16.0]], atol=1e-9)


def test_warp_matrix_maps_the_roi_corners_to_the_tensor_corners():
    roi = Roi(210.5, 160.25, 90.0, 90.0, 0.4)
    m = warp_matrix(roi, (192, 192))
    c = np.c_[roi.corners(), np.ones(4)] @ m.T
    np.testing.assert_allclose(c[:, :2] / c[:, 2:], [[0, 0], [192, 0], [192, 192], [0, 192]], atol=1e-3)


def test_detection_roi_by_hand():
    box = np.array([10.0, 20.0, 50.0, 40.0])
    level = detection_roi(box, np.array([[20.0, 30.0], [40.0, 30.0]] + [[0, 0]] * 4))
    assert (level.cx, level.cy, level.width, level.height, level.rotation) == (30.0, 30.0, 60.0, 60.0, 0.0)
    # the subject's left eye 10 px lower: the face is turned clockwise → positive rotation of 45°
    tilted = detection_roi(box, np.array([[20.0, 30.0], [30.0, 40.0]] + [[0, 0]] * 4))
    assert tilted.rotation == pytest.approx(math.pi / 4)


def test_landmarks_roi_uses_the_bounding_box_and_eye_corners():
    lm = np.zeros((478, 3))
    lm[:, 0] = np.linspace(100, 200, 478)
    lm[:, 1] = np.linspace(50, 100, 478)
    lm[33, :2], lm[263, :2] = (120, 80), (180, 80)
    roi = landmarks_roi(lm)
    assert (roi.cx, roi.cy, roi.width, roi.rotation) == (150.0, 75.0, 150.0, 0.0)


def test_letterbox_is_a_centred_square_on_the_long_side():
    assert letterbox_roi((512, 600)) == Roi(256.0, 300.0, 600.0, 600.0, 0.0)
    assert letterbox_roi((640, 480)) == Roi(320.0, 240.0, 640.0, 640.0, 0.0)


def test_crop_tensor_identity_shift_and_border():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    same = crop_tensor(img, Roi(30.0, 20.0, 60.0, 40.0), (60, 40))
    np.testing.assert_allclose(same[0].transpose(1, 2, 0), img / 255, atol=1e-7)
    shifted = crop_tensor(img, Roi(33.0, 22.0, 20.0, 10.0), (20, 10))         # starts at pixel (23, 17)
    np.testing.assert_allclose(shifted[0].transpose(1, 2, 0), img[17:27, 23:43] / 255, atol=1e-7)
    # letterbox: a 60×40 image in a 60×60 square, zero border mapped to the low end of the range
    box = crop_tensor(img, letterbox_roi((60, 40)), (60, 60), border=BORDER_ZERO, value_range=(-1.0, 1.0))
    assert np.all(box[0, :, :10] == -1.0) and np.all(box[0, :, 50:] == -1.0)
    np.testing.assert_allclose(box[0, :, 10:50].transpose(1, 2, 0), img / 127.5 - 1, atol=1e-6)


# -- whole photos against MediaPipe -----------------------------------------------------------
@pytest.mark.parametrize("index", [0, 1])
def test_photos_match_mediapipe_face_mesh_and_detection(torch_pipeline, photos, fullimage_golden, index):
    g = fullimage_golden
    name = str(g["names"][index])
    res = torch_pipeline.process(photos[name])
    assert res.image_size == tuple(int(v) for v in g["image_size"][index])
    # detections: MediaPipe's FaceDetection boxes/keypoints within 1 px
    want = [i for i in range(len(g["det_image_index"])) if g["det_image_index"][i] == index]
    assert len(res.detections) == len(want)
    for d, i in zip(res.detections, want):
        assert np.abs(d.box - g["det_boxes"][i]).max() < 1.0
        assert np.abs(d.keypoints - g["det_keypoints"][i]).max() < 1.0
        assert d.score == pytest.approx(float(g["det_scores"][i]), abs=1e-3)
    # landmarks: FaceMesh(refine_landmarks=True), mean error ≤ 0.5% IOD (measured: ~0.001%)
    faces = [i for i in range(len(g["face_image_index"])) if g["face_image_index"][i] == index]
    assert len(res.faces) == len(faces)
    for f, i in zip(res.faces, faces):
        ref = g["landmarks"][i]
        assert iod_error_pct(f.landmarks, ref) <= 0.5
        assert np.abs(f.landmarks - ref).max() < 0.1          # x, y and z in image pixels
        assert f.face_flag > 0.9


def _faces_side_by_side(photos) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two faces in one 600×300 picture (the Grace Hopper face as is, the astronaut's ×1.5),
    with MediaPipe's landmarks moved into it."""
    from tests.conftest import GOLDEN
    with np.load(GOLDEN / "fullimage_golden.npz") as g:
        lms = g["landmarks"]
    left = photos["grace_hopper"][100:400, 120:420]
    right = np.asarray(Image.fromarray(photos["astronaut"][30:230, 125:325]).resize((300, 300), Image.BILINEAR))
    refs = [lms[0] - [120, 100, 0], (lms[1] - [125, 30, 0]) * 1.5 + [300, 0, 0]]
    return np.concatenate([left, right], axis=1), refs


def test_several_faces_largest_first(torch_pipeline, photos):
    img, refs = _faces_side_by_side(photos)
    res = torch_pipeline.process(img)
    assert len(res.faces) == 2
    assert res.faces[0].area > res.faces[1].area
    assert res.faces[0].box[2] < 300 < res.faces[1].box[0]       # Grace Hopper (larger) left, astronaut right
    for face, ref in zip(res.faces, refs):
        # a different letterbox moves the detection a little, and the crop with it
        assert iod_error_pct(face.landmarks, ref) < 2.0
    data = res.to_json()
    assert data["image_size"] == [600, 300] and len(data["faces"]) == 2
    assert set(data["faces"][0]) == {"box", "score", "face_flag", "landmarks"}
    assert np.array(data["faces"][1]["landmarks"]).shape == (478, 3)
    one = type(torch_pipeline)(torch_pipeline.detector, torch_pipeline.landmarker, max_faces=1).process(img)
    assert len(one.faces) == 1


def test_no_face(torch_pipeline):
    for img in (np.zeros((300, 400, 3), np.uint8),
                np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)):
        res = torch_pipeline.process(img)
        assert res.faces == [] and res.to_json()["faces"] == []


def test_tiny_faces(torch_pipeline, photos, fullimage_golden):
    grace = Image.fromarray(photos["grace_hopper"])
    # a face filling a 64×75 picture (24 px between the box edges) is found; upsampling blurs it
    small = np.asarray(grace.resize((64, 75), Image.BILINEAR))
    res = torch_pipeline.process(small)
    assert len(res.faces) == 1
    assert iod_error_pct(res.faces[0].landmarks * 8, fullimage_golden["landmarks"][0]) < 10.0
    # the same face in an 800×600 frame is below what the short-range detector sees: no faces, no error
    canvas = np.full((600, 800, 3), 128, np.uint8)
    canvas[100:175, 300:364] = small
    assert torch_pipeline.process(canvas).faces == []
    # degenerate sizes still run
    assert torch_pipeline.process(np.zeros((1, 1, 3), np.uint8)).faces == []


# -- image files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grace_result(torch_pipeline, photos):
    return torch_pipeline.process(photos["grace_hopper"])


def test_grayscale_photo(torch_pipeline, photos, grace_result, tmp_path):
    p = tmp_path / "gray.png"
    Image.fromarray(photos["grace_hopper"]).convert("L").save(p)
    img = load_image(p)
    assert img.shape == (600, 512, 3) and np.array_equal(img[..., 0], img[..., 2])
    res = torch_pipeline.process(img)
    assert len(res.faces) == 1
    assert iod_error_pct(res.faces[0].landmarks, grace_result.faces[0].landmarks) < 2.0


def test_rgba_photo(torch_pipeline, photos, grace_result, tmp_path):
    rgba = np.dstack([photos["grace_hopper"], np.full((600, 512), 255, np.uint8)])
    p = tmp_path / "opaque.png"
    Image.fromarray(rgba, "RGBA").save(p)
    res = torch_pipeline.process(load_image(p))
    np.testing.assert_array_equal(res.faces[0].landmarks, grace_result.faces[0].landmarks)
    # transparent margins: composited over black, the face found where it is
    padded = np.zeros((700, 612, 4), np.uint8)
    padded[50:650, 50:562] = rgba
    p2 = tmp_path / "margin.png"
    Image.fromarray(padded, "RGBA").save(p2)
    img = load_image(p2)
    assert img.shape == (700, 612, 3) and img[0, 0].tolist() == [0, 0, 0]
    res2 = torch_pipeline.process(img)
    assert iod_error_pct(res2.faces[0].landmarks - [50, 50, 0], grace_result.faces[0].landmarks) < 2.0


@pytest.mark.parametrize("orientation, undo", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                               (3, Image.Transpose.ROTATE_180)])
def test_exif_rotated_jpeg_is_turned_upright(photos, orientation, undo, tmp_path):
    upright = Image.fromarray(photos["grace_hopper"])
    stored = upright.transpose(undo)        # what a camera writes, with the tag saying how to turn it
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"exif{orientation}.jpg"
    stored.save(p, quality=95, exif=exif)
    img = load_image(p)
    assert img.shape == (600, 512, 3)
    inverse = {Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
               Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
               Image.Transpose.ROTATE_180: Image.Transpose.ROTATE_180}[undo]
    with Image.open(p) as im:
        ref = np.asarray(im.convert("RGB").transpose(inverse))
    np.testing.assert_array_equal(img, ref)


def test_exif_rotated_photo_gives_upright_landmarks(torch_pipeline, photos, grace_result, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    Image.fromarray(photos["grace_hopper"]).transpose(Image.Transpose.ROTATE_90).save(p, quality=97, exif=exif)
    res = torch_pipeline.process(load_image(p))
    assert res.image_size == (512, 600) and len(res.faces) == 1
    assert iod_error_pct(res.faces[0].landmarks, grace_result.faces[0].landmarks) < 1.0   # JPEG re-encoding


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage", b"\xff\xd8\xff\xe0 truncated jpeg",
                                     b"plain text, not a picture"])
def test_corrupt_files_are_clear_errors(content, tmp_path):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(InputContractError, match="cannot read image"):
        load_image(p)


def test_missing_file_and_wrong_arrays(torch_pipeline, tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.png")
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32),
                np.zeros((0, 10, 3), np.uint8)):
        with pytest.raises(InputContractError):
            torch_pipeline.process(bad)


# -- tracking ---------------------------------------------------------------------------------
def test_tracking_follows_the_face_and_falls_back_to_detection(torch_pipeline, photos, grace_result):
    img = photos["grace_hopper"]
    tracker = FaceTracker(torch_pipeline, max_faces=1)
    first = tracker.process(img)
    assert tracker.detector_runs == 1 and len(first.faces) == 1
    np.testing.assert_array_equal(first.faces[0].landmarks, grace_result.faces[0].landmarks)
    # next frames: the face moves 6 px right and 4 px down; the ROI comes from the landmarks
    moved = np.zeros_like(img)
    moved[4:, 6:] = img[:-4, :-6]
    for _ in range(3):
        res = tracker.process(moved)
        assert len(res.faces) == 1
    assert tracker.detector_runs == 1
    assert iod_error_pct(res.faces[0].landmarks - [6, 4, 0], grace_result.faces[0].landmarks) < 2.0
    # the face leaves: the flag drops, the track ends, the detector runs on the next frame
    assert tracker.process(np.zeros_like(img)).faces == []
    assert tracker.tracks == []
    back = tracker.process(img)
    assert tracker.detector_runs == 2 and len(back.faces) == 1      # the blank frame ran no detector
