"""`attention_mesh` with imported weights sees faces exactly as MediaPipe does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import modelzoo
from modelzoo.attention_mesh.regions import MEDIAPIPE_REGIONS
from modelzoo.attention_mesh.weights import import_attention_mesh, load_from_file
from modelzoo.errors import WeightImportError
from modelzoo.fetch import fetch
from modelzoo.tflite import TFLiteGraph

TOL_PX = 1e-3       # issue #3: max error in 192-px input units
TOL_FLAG = 1e-4


@pytest.fixture(scope="module")
def outputs(attention_mesh, golden_batch):
    with torch.no_grad():
        return {k: v.numpy() for k, v in attention_mesh(golden_batch).items()}


def test_golden_landmarks_match_mediapipe(outputs, golden):
    err = np.abs(outputs["landmarks"] - golden["landmarks"])
    per_crop = err.reshape(len(err), -1).max(axis=1)
    assert per_crop.max() <= TOL_PX, dict(zip(golden["names"], per_crop))


def test_face_flag_matches_mediapipe(attention_mesh, golden_batch, outputs, golden):
    np.testing.assert_allclose(outputs["face_flag"][:, 0], golden["face_flag"], atol=TOL_FLAG, rtol=0)
    # The golden probabilities saturate at 1.0; the logits do not.
    with torch.no_grad():
        _, top = attention_mesh.features(golden_batch)
        logit = attention_mesh.face_flag_head(top).reshape(-1).numpy()
    raw = golden["raw_conv_faceflag"].reshape(-1)
    np.testing.assert_allclose(logit, raw, atol=TOL_FLAG * np.abs(raw).max(), rtol=0)


@pytest.mark.parametrize("name", ["lips", "left_eye", "right_eye", "left_iris", "right_iris"])
def test_region_outputs_match_mediapipe_tensors(outputs, golden, name):
    raw = golden[f"raw_output_{name}"].reshape(outputs[name].shape)
    assert np.abs(outputs[name] - raw).max() <= TOL_PX


def test_regions_are_read_from_the_file(attention_mesh):
    got = {r.name: r for r in attention_mesh.cfg.regions}
    for want in MEDIAPIPE_REGIONS:
        r = got[want.name]
        assert (r.left_idx, r.right_idx, r.subset, r.outputs, r.scale) == \
            (want.left_idx, want.right_idx, want.subset, want.outputs, want.scale)


def _tampered(tmp_path, mutate) -> str:
    buf = bytearray(fetch("face_landmark_with_attention.tflite").read_bytes())
    mutate(buf)
    p = tmp_path / "tampered.tflite"
    p.write_bytes(bytes(buf))
    return str(p)


def _nan_weight(buf: bytearray) -> None:
    g = TFLiteGraph(bytes(buf))
    t = g.by_name("conv2d_4/Kernel")  # an fp16 constant: find its bytes and poison them
    raw = g.tensors[t.index].data.astype(np.float16).tobytes()
    at = bytes(buf).find(raw)
    assert at > 0
    buf[at:at + 2] = np.float16(np.nan).tobytes()


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b.__delitem__(slice(len(b) // 2, None)), "not a readable TFLite model"),
    (lambda b: b.__setitem__(slice(4, 8), b"XXXX"), "not a readable TFLite model"),
    (_nan_weight, "NaN"),
])
def test_tampered_flatbuffer_raises_and_leaves_model_untouched(tmp_path, mutate, match):
    model = modelzoo.load_model("attention_mesh", pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightImportError, match=match):
        load_from_file(model, _tampered(tmp_path, mutate))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_topology_mismatch_is_refused():
    paper = modelzoo.load_model("attention_mesh_paper", pretrained=False)
    with pytest.raises(WeightImportError, match="shape"):
        import_attention_mesh(TFLiteGraph.load(fetch("face_landmark_with_attention.tflite")), paper)
