"""The photo pipeline on compiled artifacts (through the runners) against the PyTorch one, and
its per-image benchmark."""
from __future__ import annotations

from contextlib import ExitStack

import pytest
from PIL import Image

from modelzoo.data import SAMPLE_PHOTO
from modelzoo.photo import load_image
from runtime.record import BuildRecordError
from modelzoo.photo.networks import PipelineBuildError, open_pipeline
from validation.pipeline import compare_photos

pytestmark = pytest.mark.slow

# (format, precision, runner, bound on the mean landmark error in % of the inter-ocular distance)
CASES = [("onnx", "fp32", None, 0.01), ("tflite", "fp32", "tflite", 0.01), ("tflite", "fp16", "tflite", 0.01),
         ("coreml", "fp32", "mil", 0.01), ("coreml", "fp16", "mil", 0.1)]


@pytest.fixture(scope="module")
def photo_results(detector_build, torch_pipeline, photos):
    build = detector_build.parent
    results = {name: {"pytorch": torch_pipeline.process(img)} for name, img in photos.items()}
    for fmt, precision, runner, _ in CASES:
        with ExitStack() as stack:
            pipe = open_pipeline(stack, build=build, fmt=fmt, precision=precision, runtime=runner)
            for name, img in photos.items():
                results[name][f"{fmt}/{precision}"] = pipe.process(img)
    return results


@pytest.mark.parametrize("fmt, precision, runner, bound", CASES)
def test_every_format_finds_the_same_faces_and_landmarks(photo_results, fmt, precision, runner, bound):
    for name, results in photo_results.items():
        cmp = compare_photos(results)[f"{fmt}/{precision}"]
        assert cmp["faces"] == len(results["pytorch"].faces) == 1, name
        face = cmp["per_face"][0]
        assert face["mean_iod_pct"] <= bound, (name, face)
        assert face["box_max_px"] < 0.1, (name, face)


def test_missing_artifacts_are_clear_errors(detector_build, tmp_path):
    with ExitStack() as stack:
        with pytest.raises(BuildRecordError, match="no build record of face_detector"):
            open_pipeline(stack, build=tmp_path, fmt="tflite")
        with pytest.raises(BuildRecordError, match="attention_mesh has no coreml/int8 artifact"):
            open_pipeline(stack, build=detector_build.parent, fmt="coreml", precision="int8")
        # the detector ships no int8: an int8 landmark model is paired with the fp32 detector
        pipe = open_pipeline(stack, build=detector_build.parent, fmt="tflite", precision="int8")
        assert pipe.detector.runner.artifact.name == "face_detector-fp32.tflite"
        assert pipe.landmarker.runner.artifact.name == "attention_mesh-int8.tflite"
        with pytest.raises(PipelineBuildError, match="--build is needed"):
            open_pipeline(stack, fmt="onnx")
        with pytest.raises(PipelineBuildError, match="not a landmark model"):
            open_pipeline(stack, "face_detector")


def test_photo_benchmark_record(detector_build):
    from validation.bench.photo import PHOTO_LATENCY_JSON, bench_photo, format_photo
    out = bench_photo(SAMPLE_PHOTO, detector_build.parent, runs=3, warmup=1)
    assert out["faces"] == 1 and out["image_size"] == list(load_image(SAMPLE_PHOTO).shape[1::-1])
    s = out["stages_ms"]
    for key in ("total", "detect", "landmarks", "detector_net", "landmark_net"):
        assert s[key]["runs"] == 3 and 0 < s[key]["min_ms"] <= s[key]["median_ms"] <= s[key]["max_ms"]
    # the networks are part of their stages, the stages part of the total
    assert s["detector_net"]["min_ms"] <= s["detect"]["max_ms"]
    assert s["landmark_net"]["min_ms"] <= s["landmarks"]["max_ms"]
    assert (detector_build.parent / "attention_mesh" / PHOTO_LATENCY_JSON).is_file()
    assert "per image" in format_photo(out)
    with pytest.raises(ValueError):
        bench_photo(SAMPLE_PHOTO, detector_build.parent, runs=0)


def test_validate_photos_on_every_built_format(detector_build, photos, tmp_path, monkeypatch):
    import json

    import validation.pipeline as vp
    from validation.compare import ParityError
    paths = []
    for name, img in photos.items():
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(img).save(paths[-1])
    out = vp.validate_photos(paths, detector_build.parent)
    assert out["passed"] and not out["skipped"]
    cands = {r["candidate"] for r in out["rows"]}
    assert cands == {"onnx/fp32", "tflite/fp32", "tflite/fp16", "tflite/int8", "coreml/fp32", "coreml/fp16"}
    int8 = [r for r in out["rows"] if r["candidate"] == "tflite/int8"]
    assert all(r["detector"] == "tflite/fp32" and r["worst_mean_iod_pct"] <= 1.0 for r in int8)
    assert json.loads((detector_build.parent / "attention_mesh" / vp.PHOTO_PARITY_JSON).read_text())["passed"]
    # the same photos against a bound nothing can meet: every fp32 candidate is named in the error
    monkeypatch.setattr(vp, "FP32_PHOTO_IOD_PCT", 0.0)
    with pytest.raises(ParityError, match="tflite/fp32 on .*% IOD > 0%"):
        vp.validate_photos(paths[:1], detector_build.parent)
