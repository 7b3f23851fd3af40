"""The CLI as a user runs it: a real subprocess, real files."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def meshport(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshport", *args], capture_output=True, text=True, timeout=300)


def test_models_reports_size_and_cost():
    r = meshport("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in json.loads(r.stdout)}
    assert rows["attention_mesh"]["params"] == 1_189_277 and rows["attention_mesh"]["pretrained"]
    assert rows["attention_mesh_paper"]["params"] == 1_578_237
    assert rows["attention_mesh_paper"]["macs"] == 81_402_144
    assert "face_mesh_cascade" in rows
    table = meshport("models")
    assert table.returncode == 0 and "attention_mesh_paper" in table.stdout


def test_predict_on_a_golden_crop(tmp_path, golden):
    crop = tmp_path / "crop.png"
    Image.fromarray(golden["crops"][4]).save(crop)
    out_png, out_json = tmp_path / "o" / "overlay.png", tmp_path / "o" / "lm.json"
    r = meshport("predict", "attention_mesh", str(crop), "--crop", "-o", str(out_png), "-o", str(out_json))
    assert r.returncode == 0, r.stderr
    data = json.loads(out_json.read_text())
    assert data["image_size"] == [192, 192]
    lm = np.array(data["landmarks"])
    assert lm.shape == (478, 3)
    assert np.abs(lm - golden["landmarks"][4]).max() < 1e-3
    assert data["face_flag"] > 0.99
    with Image.open(out_png) as im:
        assert im.size == (576, 576)


def test_predict_scales_a_larger_crop_back_to_image_pixels(tmp_path, golden):
    crop = tmp_path / "big.png"
    Image.fromarray(golden["crops"][0]).resize((384, 384), Image.BILINEAR).save(crop)
    r = meshport("predict", "attention_mesh", str(crop), "--crop", "-o", str(tmp_path / "lm.json"))
    assert r.returncode == 0, r.stderr
    lm = np.array(json.loads((tmp_path / "lm.json").read_text())["landmarks"])
    # Resizing 384→192 is close to the original crop: landmarks ×2 agree to a pixel or so.
    assert np.abs(lm[:, :2] / 2 - golden["landmarks"][0][:, :2]).mean() < 1.0


@pytest.mark.parametrize("args, message", [
    (("predict", "nope_model"), "unknown model 'nope_model'"),
    (("predict", "attention_mesh", "/no/such/file.png"), "no such image"),
])
def test_bad_input_exits_with_one_line(args, message):
    r = meshport(*args)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_predict_on_a_whole_photo(tmp_path, fullimage_golden):
    out_png, out_json = tmp_path / "o" / "overlay.png", tmp_path / "o" / "faces.json"
    r = meshport("predict", "attention_mesh", "-o", str(out_png), "-o", str(out_json))   # the sample photo
    assert r.returncode == 0, r.stderr
    data = json.loads(out_json.read_text())
    assert set(data) == {"image_size", "faces"} and data["image_size"] == [512, 600]
    (face,) = data["faces"]
    assert set(face) == {"box", "score", "face_flag", "landmarks"}
    # the sample photo is the Grace Hopper portrait of the golden file
    np.testing.assert_allclose(face["box"], fullimage_golden["det_boxes"][0], atol=1e-2)
    assert np.abs(np.array(face["landmarks"]) - fullimage_golden["landmarks"][0]).max() < 0.1
    assert 0.9 < face["face_flag"] <= 1.0 and 0.5 <= face["score"] <= 1.0
    with Image.open(out_png) as im:
        assert im.size == (576, 675)


def test_predict_with_the_detector_only(tmp_path):
    r = meshport("predict", "face_detector", "--json")
    assert r.returncode == 0, r.stderr
    (det,) = json.loads(r.stdout)["faces"]
    assert set(det) == {"box", "score", "keypoints"} and np.array(det["keypoints"]).shape == (6, 2)
    r = meshport("predict", "face_detector", "--crop")
    assert r.returncode == 2 and "not a landmark model" in r.stderr


def test_predict_tracks_faces_across_frames(tmp_path):
    from modelzoo.data import SAMPLE_PHOTO
    frames = []
    with Image.open(SAMPLE_PHOTO) as im:
        for i, dx in enumerate((0, 4, 8)):                    # the face drifts right by 4 px a frame
            p = tmp_path / f"frame{i}.png"
            Image.fromarray(np.roll(np.asarray(im), dx, axis=1)).save(p)
            frames.append(str(p))
    blank = tmp_path / "blank.png"
    Image.new("RGB", (512, 600)).save(blank)
    r = meshport("predict", "attention_mesh", *frames, str(blank), frames[0], "--track", "-o",
                 str(tmp_path / "t.json"), "-o", f"{tmp_path / 'overlays'}/")
    assert r.returncode == 0, r.stderr
    assert "the detector ran on 2 of 5 frames" in r.stdout      # first frame, and after the face was lost
    data = json.loads((tmp_path / "t.json").read_text())["frames"]
    assert [len(f["faces"]) for f in data] == [1, 1, 1, 0, 1]
    xs = [np.array(f["faces"][0]["landmarks"])[:, 0].mean() for f in data[:3]]
    assert 3 < xs[1] - xs[0] < 5 and 3 < xs[2] - xs[1] < 5
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 5     # frame0.png and frame0-2.png among them


def test_predict_on_a_photo_without_faces(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (90, 120, 200)).save(blank)
    r = meshport("predict", "attention_mesh", str(blank), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"image_size": [320, 240], "faces": []}


def test_predict_to_an_unwritable_place_is_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("")
    r = meshport("predict", "attention_mesh", "-o", str(tmp_path / "file" / "lm.json"))   # under a file
    assert r.returncode == 2 and "cannot write" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_predict_needs_a_build_for_compiled_formats(tmp_path):
    r = meshport("predict", "attention_mesh", "--format", "tflite", "--build", str(tmp_path))
    assert r.returncode == 2 and "no build record of face_detector" in r.stderr


def test_corrupt_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = meshport("predict", "attention_mesh", str(bad), "-o", str(tmp_path / "o.png"))
    assert r.returncode == 2 and "cannot read image" in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_build_writes_the_record_and_caches(tmp_path):
    r = meshport("build", "attention_mesh_paper", "--out", str(tmp_path), "--formats", "onnx", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["built"] == ["attention_mesh_paper.onnx"]
    record = json.loads((tmp_path / "attention_mesh_paper" / "build.json").read_text())
    assert record["artifacts"][0]["format"] == "onnx"
    again = json.loads(meshport("build", "attention_mesh_paper", "--out", str(tmp_path), "--formats", "onnx",
                                "--json").stdout)
    assert again["up_to_date"] == ["attention_mesh_paper.onnx"] and again["built"] == []


@pytest.mark.parametrize("args, message", [
    (("build", "nope_model", "--out", "x"), "unknown model 'nope_model'"),
    (("build", "attention_mesh", "--out", "x", "--formats", "onnx", "--precisions", "int8"), "nothing to build"),
    (("build", "attention_mesh", "--out", "x", "--formats", "tensorrt"), "unknown value tensorrt"),
    (("build", "attention_mesh", "--out", "x", "--formats", "pytorch"), "no enabled pytorch target"),
])
def test_build_bad_input_exits_with_one_line(tmp_path, args, message):
    args = tuple(str(tmp_path / a) if a == "x" else a for a in args)
    r = meshport(*args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.rglob("*.onnx"))
