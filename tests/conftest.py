from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "attention_mesh_golden.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def golden_batch(golden) -> torch.Tensor:
    """The golden face crops as the model's NCHW float input."""
    return torch.from_numpy(golden["crops"].astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="session")
def attention_mesh():
    import modelzoo
    return modelzoo.load_model("attention_mesh", pretrained=True)


@pytest.fixture(scope="session")
def full_build(tmp_path_factory):
    """One cold build of the real model through every format (the slow end-to-end fixture)."""
    from converters.build import build
    out = tmp_path_factory.mktemp("full_build")
    result = build("attention_mesh", out)
    return out / "attention_mesh", result


@pytest.fixture(scope="session")
def detector_build(full_build):
    """One cold build of the face detector through every format it targets, next to the
    attention mesh's build (the photo pipeline runs both from one build directory)."""
    from converters.build import build
    out = full_build[0].parent
    build("face_detector", out)
    return out / "face_detector"


@pytest.fixture(scope="session")
def cascade_build(tmp_path_factory):
    """face_mesh_cascade built to every target of its spec (ONNX, TFLite fp32/fp16/int8 with the
    GPU check required, one onnx2tf run; Core ML fp32/fp16); `<out>/face_mesh_cascade` and the
    BuildResult."""
    from converters.build import build
    out = tmp_path_factory.mktemp("cascade_build")
    result = build("face_mesh_cascade", out, require_gpu=True)
    return out / "face_mesh_cascade", result


@pytest.fixture(scope="session")
def fullimage_golden() -> dict[str, np.ndarray]:
    """MediaPipe's own full-image results (legacy FaceMesh + FaceDetection) on two public photos."""
    with np.load(GOLDEN / "fullimage_golden.npz") as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def photos(fullimage_golden) -> dict[str, np.ndarray]:
    """The two public photos of the golden file, decoded as MediaPipe's script decoded them
    (checked by sha256 of the pixels, so a different JPEG decoder fails loudly)."""
    import hashlib

    import matplotlib.cbook
    import skimage.data

    from modelzoo.photo import load_image
    imgs = {"grace_hopper": load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
            "astronaut": np.ascontiguousarray(skimage.data.astronaut().astype(np.uint8))}
    for name, digest in zip(fullimage_golden["names"], fullimage_golden["image_sha256"]):
        assert hashlib.sha256(imgs[str(name)].tobytes()).hexdigest() == digest, f"{name} decodes differently"
    return imgs


@pytest.fixture(scope="session")
def torch_pipeline():
    """The photo pipeline on the PyTorch face_detector and attention_mesh."""
    from contextlib import ExitStack

    from modelzoo.photo.networks import open_pipeline
    with ExitStack() as stack:
        yield open_pipeline(stack, "attention_mesh")


@pytest.fixture(scope="session", autouse=True)
def _trust_dir(tmp_path_factory):
    """Keys a test's release trusts go to a temporary trust directory, never the user's home
    (tests that need their own set $MESHPORT_TRUST_DIR again)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESHPORT_TRUST_DIR", str(tmp_path_factory.mktemp("trust")))
        yield
