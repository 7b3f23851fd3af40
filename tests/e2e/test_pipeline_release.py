"""The face pipeline released as one bundle, pulled, and run from Python without torch: the
detector and the landmark model pinned and signed together, only the targets that passed
whole-photo parity shipped, the pulled bundle's pipeline equal to the PyTorch pipeline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from artifacts import Store, verify_dir
from artifacts.signing import verify as verify_signature
from modelzoo.data import SAMPLE_PHOTO
from modelzoo.photo import load_image
from modelzoo.photo.contract import PIPELINE, PipelineContractError
from runtime.errors import IntegrityError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def released(full_build, detector_build, tmp_path_factory):
    from meshport.pipeline_release import release_pipeline
    out = full_build[0].parent
    store = tmp_path_factory.mktemp("pipeline_store") / "store"
    with pytest.MonkeyPatch.context() as mp:          # the release trusts its own key here, not in the home
        mp.setenv("MESHPORT_TRUST_DIR", str(tmp_path_factory.mktemp("trust")))
        summary = release_pipeline("1.0.0", store=str(store), out=out, runs=3)
        pulled = tmp_path_factory.mktemp("pulled") / "face_pipeline"
        Store(str(store)).pull(f"{PIPELINE}@latest", pulled)      # verified against the trusted release key
        yield summary, store, pulled, out


def _reference(image):
    from modelzoo.photo.networks import pytorch_runner, RunnerNetwork
    from modelzoo.photo import FacePipeline
    with pytorch_runner("face_detector") as det, pytorch_runner("attention_mesh") as lm:
        return FacePipeline(RunnerNetwork(det), RunnerNetwork(lm)).process(image)


def _mean_iod_pct(a: np.ndarray, b: np.ndarray) -> float:
    from modelzoo.metrics import inter_ocular_distance
    iod = inter_ocular_distance(b)
    return float(np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean() / iod * 100)


@pytest.mark.slow
def test_the_bundle_pins_both_networks_and_ships_only_what_passed_on_photos(released):
    summary, store, pulled, out = released
    assert summary.published
    manifest = json.loads((pulled / "manifest.json").read_text())
    assert verify_signature(manifest, summary.public_key)            # one signature over both networks
    assert manifest["kind"] == "pipeline"
    comps = manifest["components"]
    assert (comps["detector"]["model"], comps["landmarks"]["model"]) == ("face_detector", "attention_mesh")
    for role, c in comps.items():
        build = json.loads((out / c["model"] / "build.json").read_text())
        assert c["spec_sha256"] == build["spec_sha256"]
    photo = json.loads((out / "attention_mesh" / "photo_parity.json").read_text())
    failed = {r["candidate"] for r in photo["rows"] if not r["passed"]} | {s["candidate"] for s in photo["skipped"]}
    passed = {r["candidate"] for r in photo["rows"]} - failed
    pairing = manifest["pipeline"]["pairing"]
    assert set(pairing) == passed and passed                       # shipped exactly what passed on every photo
    assert {x["target"] for x in manifest["pipeline"]["excluded"]} == failed
    shipped = {(a["component"], a["format"], a["precision"]) for a in manifest["artifacts"]}
    for target, pair in pairing.items():
        for role in ("detector", "landmarks"):
            fmt, prec = pair[role].split("/")
            assert (comps[role]["model"], fmt, prec) in shipped
    for t in failed:
        assert ("attention_mesh", *t.split("/")) not in shipped
    # The summary's rows are the shipped pairs with their photo figures under their bounds.
    assert {r["target"] for r in summary.rows} == passed
    assert all(r["worst_mean_iod_pct"] <= r["bound"] for r in summary.rows)
    # Every pulled artifact passes its self-test; the card carries usage snippets from the contract.
    result = verify_dir(pulled, public_key=summary.public_key)
    assert result.results and all(r.passed for r in result.results)
    card = (pulled / "MODEL_CARD.md").read_text()
    assert "```kotlin" in card and "```swift" in card and "from_pulled" in card
    assert 'interpreter.getOutputIndex("' in card
    # Re-running the release is a no-op.
    from meshport.pipeline_release import release_pipeline
    again = release_pipeline("1.0.0", store=str(store), out=out, runs=3)
    assert not again.published


@pytest.mark.slow
def test_a_pulled_bundle_runs_the_photo_pipeline_like_pytorch(released):
    from meshport.runtime import FacePipeline
    from validation.pipeline import photo_bound
    import modelzoo
    summary, _, pulled, _ = released
    image = load_image(SAMPLE_PHOTO)
    ref = _reference(image)
    assert ref.faces
    spec = modelzoo.get_spec("attention_mesh")
    for target in ("onnx/fp32", "tflite/fp32", "tflite/fp16"):
        fmt, prec = target.split("/")
        with FacePipeline.from_pulled(pulled, format=fmt, precision=prec) as pipe:
            got = pipe.process(image)
        assert len(got.faces) == len(ref.faces), target
        for g, r in zip(got.faces, ref.faces):
            assert _mean_iod_pct(g.landmarks, r.landmarks) <= photo_bound(spec, fmt, prec), target


@pytest.mark.slow
def test_a_tampered_or_missing_pair_is_refused(released, tmp_path):
    import shutil
    from meshport.runtime import FacePipeline
    _, _, pulled, _ = released
    copy = tmp_path / "copy"
    shutil.copytree(pulled, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    row = next(a for a in manifest["artifacts"] if a["component"] == "attention_mesh" and a["format"] == "onnx"
               and a["precision"] == "fp32")
    f = copy / row["path"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="modified after pull"):
        FacePipeline.from_pulled(copy, format="onnx", precision="fp32")
    with pytest.raises(PipelineContractError, match="no onnx/int3 pair"):
        FacePipeline.from_pulled(copy, format="onnx", precision="int3")
    manifest["pipeline"]["rules"]["roi_scale"] = 2.0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PipelineContractError, match="roi_scale"):
        FacePipeline.from_pulled(copy, format="tflite", precision="fp32")


def _venv_without_torch(where: Path) -> Path:
    """A virtualenv holding every package of this one except torch (and what needs it): each
    top-level entry of site-packages linked in, torch's left out."""
    import sysconfig
    site = Path(sysconfig.get_paths()["purelib"])
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    target = where / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for entry in site.iterdir():
        low = entry.name.lower()
        if low.startswith(("torch", "functorch", "triton", "nvidia", "__editable__", "_meshport")) \
                or low.endswith(".pth"):
            continue
        (target / entry.name).symlink_to(entry)
    (target / "meshport-repo.pth").write_text(str(REPO) + "\n")
    return where / "bin" / "python"


@pytest.mark.slow
def test_a_pulled_bundle_runs_without_torch_installed(released, tmp_path):
    _, _, pulled, _ = released
    python = _venv_without_torch(tmp_path / "venv")
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    script = (
        "import json, sys\n"
        "from meshport.runtime import FacePipeline\n"
        "from modelzoo.photo import load_image\n"
        f"with FacePipeline.from_pulled({str(pulled)!r}, format='tflite', precision='fp32') as p:\n"
        f"    r = p.process(load_image({str(SAMPLE_PHOTO)!r}))\n"
        "assert 'torch' not in sys.modules\n"
        "print(json.dumps([f.landmarks.tolist() for f in r.faces]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    faces = [np.array(f) for f in json.loads(run.stdout.strip().splitlines()[-1])]
    from meshport.runtime import FacePipeline
    with FacePipeline.from_pulled(pulled, format="tflite", precision="fp32") as p:
        here = p.process(load_image(SAMPLE_PHOTO))
    assert len(faces) == len(here.faces) >= 1
    for a, b in zip(faces, here.faces):
        np.testing.assert_allclose(a, b.landmarks, rtol=0, atol=1e-9)   # the same runtime, the same numbers


@pytest.mark.slow
def test_predict_and_validate_accept_a_pulled_directory(released):
    from meshport.cli import main
    _, _, pulled, _ = released
    env_python = [sys.executable, "-m", "meshport"]
    run = subprocess.run(env_python + ["predict", "attention_mesh", "--build", str(pulled), "--format", "tflite",
                                       "--precision", "fp32", "--print-json"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    faces = json.loads(run.stdout)["faces"]
    from meshport.runtime import FacePipeline
    with FacePipeline.from_pulled(pulled, format="tflite", precision="fp32") as p:
        here = p.process(load_image(SAMPLE_PHOTO))
    assert len(faces) == len(here.faces)
    np.testing.assert_allclose(np.array(faces[0]["landmarks"]), here.faces[0].landmarks, atol=1e-3)
    assert main(["validate", "face_detector", "--build", str(pulled)]) == 0
    assert (pulled / "face_detector" / "parity.json").is_file()
    assert main(["bench", "face_detector", "--build", str(pulled), "--runtimes", "onnxruntime", "--runs", "3",
                 "--warmup", "1", "-q"]) == 0
    bench = json.loads((pulled / "face_detector" / "bench.json").read_text())
    assert {r["artifact"] for r in bench["records"]} and all(r["median_ms"] > 0 for r in bench["records"])
