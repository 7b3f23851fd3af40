"""The Table 1 experiment: its timing machinery, the MediaPipe cuts, the lowering-cost split, the
cascade parts cut out of its build and its command line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


# -- Table 1 machinery and TFLite cuts ------------------------------------------------------------

def test_interleave_alternates_and_drops_warmup():
    from experiments.table1 import interleave
    order = []
    t = interleave({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, runs=3, warmup=1)
    assert order == ["a", "b"] * 4 and [len(v) for v in t.values()] == [3, 3]


def test_mediapipe_network_cuts_are_custom_op_free():
    from modelzoo.errors import IntegrityError
    from validation.bench import tflite_profile as tp
    from modelzoo.fetch import fetch
    from experiments.table1 import MEDIAPIPE_MODEL, MP_HEAD_IN, mediapipe_cuts
    try:
        cuts = mediapipe_cuts()
    except (IntegrityError, OSError) as exc:   # no cached wheel and no network
        pytest.skip(reason=f"MediaPipe's model is not available offline: {exc}")
    custom = {"CUSTOM:Landmarks2TransformMatrix", "CUSTOM:TransformTensorBilinear", "CUSTOM:TransformLandmarks"}
    assert custom <= set(tp.histogram(fetch(MEDIAPIPE_MODEL).read_bytes()))   # the names the check looks for
    for name, buf in cuts.items():
        assert not custom & set(tp.histogram(buf)), name
        with tp.open_model(buf) as r:
            zeros = [np.zeros(shape, np.float32) for shape, _ in r.input_details().values()]
            assert len(tp.time_model(r, zeros, runs=2, warmup=1)) == 2
    with tp.open_model(cuts["heads"]) as heads:
        assert heads.input_names == list(MP_HEAD_IN)
    with pytest.raises(tp.CutError, match="no tensor"):
        tp.cut_model(cuts["backbone"], ["input_1"], ["no_such_tensor"])
    with pytest.raises(tp.CutError, match="needed"):
        tp.cut_model(cuts["heads"], [MP_HEAD_IN[0]], ["conv_left_eye"])


@pytest.mark.slow
def test_sampler_groups_partition_our_tflite(full_build):
    """The lowering-cost split: every op in exactly one group; sampling holds the runtime-index
    GATHERs and the per-region crops, the network every convolution, the matrices no GATHER
    with runtime indices."""
    from runtime.tflite import Graph
    from experiments.table1 import sampler_groups
    root, _ = full_build
    buf = (root / "attention_mesh-fp32.tflite").read_bytes()
    groups = sampler_groups(buf)
    g = Graph.from_bytes(buf)
    kind = {op.index: op.kind for op in g.ops}
    sets = list(groups.values())
    assert sum(len(s) for s in sets) == len(g.ops) == len(set().union(*sets))
    sampling = groups["sampling: grid + lowered GridSample"]
    runtime_gathers = {op.index for op in g.ops if op.kind == "GATHER" and not g.tensor(op.inputs[1]).const}
    assert runtime_gathers and runtime_gathers <= sampling
    assert not {i for i in sampling if kind[i] in ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU")}
    crops = [i for i in sampling if g.tensor(g.ops[i].outputs[0]).rank == 4]
    assert len([i for i in crops if kind[i] == "STRIDED_SLICE"]) >= 3     # 3 region crops (+ row tables)


@pytest.mark.slow
def test_cascade_parts_are_cut_from_its_build(cascade_build):
    """Table 1's mesh, eye & iris and lips models are the built cascade's own: each TFLite cut
    reproduces, bit for bit, the tensors the built file computes at its boundaries (same kernels,
    same inputs); each ONNX cut computes its PyTorch sub-model; the parts cover every
    convolution of the build."""
    import onnxruntime as ort
    import torch

    import modelzoo
    from runtime.tflite import Graph
    from validation.bench import tflite_profile as tp
    from experiments.table1 import CASCADE, built_fp32, cascade_inputs, cascade_parts
    root, _ = cascade_build
    arts = built_fp32(root.parent, CASCADE, ["onnx", "tflite"])
    parts = cascade_parts(arts)
    assert {p: set(d) for p, d in parts.items()} == {p: {"onnx", "tflite"} for p in ("mesh", "iris", "lips")}
    full = arts["tflite"].read_bytes()
    inputs = cascade_inputs()
    values = tp.all_tensors(full, [inputs["image"][0].transpose(0, 2, 3, 1)])
    g = Graph.from_bytes(full)
    shapes = {"mesh": (1, 192, 192, 3), "iris": (2, 64, 64, 3), "lips": (1, 64, 64, 3)}   # NHWC
    convs = 0
    for part, d in parts.items():
        cut = Graph.from_bytes(d["tflite"])
        assert [cut.tensor(i).shape for i in cut.inputs] == [shapes[part]], part
        feed = [values[g.find(cut.tensor(i).name).index] for i in cut.inputs]
        with tp.open_model(d["tflite"]) as r:
            got = r.run_native(tp.native_feed(r, feed))
        for name, v in got.items():
            np.testing.assert_array_equal(v, values[g.find(name).index].reshape(v.shape), err_msg=f"{part} {name}")
        convs += sum(op.kind == "CONV_2D" for op in cut.ops)
    assert convs == sum(op.kind == "CONV_2D" for op in g.ops)
    # ONNX cuts against the PyTorch sub-models on the same crops, within the fp32 bound (1e-3 px;
    # the outputs are in image or crop pixels).
    model = modelzoo.load_model(CASCADE, pretrained=True)
    with torch.no_grad():
        want = {"mesh": [t.numpy() for t in model.mesh(torch.from_numpy(inputs["image"][0]))],
                "iris": [t.numpy() for t in model.iris(torch.from_numpy(inputs["eyes"][0])).values()],
                "lips": [model.lips(torch.from_numpy(inputs["lips"][0])).numpy()]}
    feeds = {"mesh": inputs["image"][0], "iris": inputs["eyes"][0], "lips": inputs["lips"][0]}
    for part, d in parts.items():
        sess = ort.InferenceSession(d["onnx"])
        got = sess.run(None, {sess.get_inputs()[0].name: feeds[part]})
        assert len(got) == len(want[part]), part
        for a, b in zip(got, want[part]):
            assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3, (part, np.abs(a - b).max())
        shifted = got[0].copy()
        shifted.flat[0] += 2e-3                          # an output moved by twice the bound fails it
        assert np.abs(shifted - want[part][0]).max() > 1e-3


def test_the_command_line_says_what_is_missing_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.table1", "--build", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("table1: error: no build record of attention_mesh")
    assert len(proc.stderr.strip().splitlines()) == 1

