"""One contract test for every runner, parametrised over the registry."""
from __future__ import annotations

import numpy as np
import pytest

import modelzoo
from modelzoo.data import sample_face
from runtime.record import BuildRecord
from runtime.runners import (RUNNERS, InputMismatchError, OutputError, RunnerError, RunnerUnavailable, get_runner,
                             runner_for)

SPEC = modelzoo.get_spec("attention_mesh")


def _entry(root, fmt, precision="fp32"):
    return BuildRecord.read(root / "build.json").artifact(fmt, precision)


def _make(name, root):
    cls = get_runner(name)
    if cls.format == "pytorch":
        return cls(SPEC)
    return runner_for(name, SPEC, root, _entry(root, cls.format))


@pytest.fixture(scope="module")
def face():
    return {"image": sample_face(192)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_runner_contract(name, full_build, face):
    root, _ = full_build
    runner = _make(name, root)
    avail = runner.is_available()
    if not avail.ok:
        assert avail.reason  # says why, e.g. Core ML predict off macOS
        with pytest.raises(RunnerUnavailable, match=name):
            runner.load()
        return
    with runner as r:
        out = r.infer(face)
        assert list(out) == [o.name for o in SPEC.outputs]
        for o in SPEC.outputs:
            assert out[o.name].shape == tuple(1 if d is None else d for d in o.shape)
            assert out[o.name].dtype == np.float32 and np.isfinite(out[o.name]).all()
        assert r.last_inference_ms and r.last_inference_ms > 0
        with pytest.raises(InputMismatchError, match="feeds"):
            r.infer({"pixels": face["image"]})
        with pytest.raises(InputMismatchError, match="shape"):
            r.infer({"image": face["image"].transpose(0, 2, 3, 1)})
        with pytest.raises(InputMismatchError, match="float64"):
            r.infer({"image": face["image"].astype(np.float64)})
    assert not runner._loaded


@pytest.mark.slow
def test_runners_agree_on_a_real_face(full_build, face):
    root, _ = full_build
    ref = _make("pytorch", root).infer(face)["landmarks"]
    for name in ("onnxruntime", "tflite", "tflite-ref", "mil", "tflite-gpu-f32"):
        if not get_runner(name).is_available().ok:
            assert name == "tflite-gpu-f32"        # the GPU runner's absence is tested below
            continue
        got = _make(name, root).infer(face)["landmarks"]
        assert np.abs(got - ref).max() < 1e-3, name


def test_gpu_runner_says_why_without_a_vulkan_adapter():
    """With no Vulkan driver to load, the GPU runners are unavailable and name the missing adapter."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    code = ("from runtime.runners import get_runner\n"
            "a = get_runner('tflite-gpu').is_available()\n"
            "assert not a.ok\n"
            "print(a.reason)")
    env = {**os.environ, "VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no Vulkan adapter found" in proc.stdout and "mesa-vulkan-drivers" in proc.stdout


def test_coreml_predict_says_why_it_is_unavailable_off_macos():
    import platform
    avail = get_runner("coreml").is_available()
    assert avail.ok == (platform.system() == "Darwin")
    if not avail.ok:
        assert "macOS" in avail.reason and "mil" in avail.reason


def test_missing_and_corrupt_artifacts(tmp_path):
    with pytest.raises(RunnerError, match="not found"):
        get_runner("onnxruntime")(SPEC, tmp_path / "nope.onnx").load()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(RunnerError, match="cannot load"):
        get_runner("tflite")(SPEC, bad, input_layout="NHWC").load()


@pytest.mark.slow
def test_layouts_come_from_the_declaration(full_build, face):
    root, _ = full_build
    entry = _entry(root, "tflite")
    wrong = get_runner("tflite")(SPEC, root / entry.path, input_layout="NCHW")  # declared wrongly
    with pytest.raises(RunnerError, match="declared layout NCHW"):
        wrong.infer(face)


@pytest.mark.slow
def test_nan_outputs_are_a_typed_error(full_build, face):
    root, _ = full_build
    r = _make("onnxruntime", root)
    bad = face["image"].copy()
    bad[0, 0, 10, 10] = np.nan
    with pytest.raises(OutputError, match="NaN"):
        r.infer({"image": bad})


@pytest.mark.slow
def test_without_a_spec_a_runner_runs_the_artifacts_own_io(full_build, face):
    """spec=None: feeds and outputs are the artifact's own, in its native layout; TFLite also
    loads from bytes. The same numbers as through the spec."""
    root, _ = full_build
    entry = _entry(root, "tflite")
    want = runner_for("tflite", SPEC, root, entry).infer(face)
    nhwc = np.ascontiguousarray(face["image"].transpose(0, 2, 3, 1))
    with get_runner("tflite")(None, (root / entry.path).read_bytes()) as r:
        assert r.input_names == ["image"]
        got = r.run_native({"image": nhwc})
        assert r.last_inference_ms > 0
    assert set(got) == set(want)
    for k in want:
        assert np.array_equal(got[k].reshape(want[k].shape), want[k]), k
    with get_runner("tflite")(None, root / entry.path, preserve_all_tensors=True) as r:
        r.run_native({"image": nhwc})
        assert len([t for t in r.tensors() if t[2].dtype == np.float32]) > 100


def test_registry_lists_every_runtime_and_refuses_duplicates():
    from runtime.errors import RegistryError
    from runtime.runners import register_runner
    assert {"pytorch", "onnxruntime", "onnxruntime-cuda", "tflite", "tflite-ref", "tflite-gpu", "tflite-gpu-f32",
            "coreml", "coreml-cpu", "coreml-cpu-gpu", "coreml-all", "mil"} <= set(RUNNERS)
    with pytest.raises(RegistryError, match="already registered"):
        register_runner(get_runner("tflite"))
    with pytest.raises(RegistryError, match="known: "):
        get_runner("tensorrt")


def test_runner_for_refuses_another_format(tmp_path):
    from runtime.record import ArtifactRecord
    entry = ArtifactRecord("m.onnx", "onnx", "fp32", "", 0)
    with pytest.raises(RunnerError, match="runs tflite artifacts, not onnx"):
        runner_for("tflite", SPEC, tmp_path, entry)
