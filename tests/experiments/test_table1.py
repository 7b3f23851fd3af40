"""The Table 1 experiment: its timing machinery, the MediaPipe cuts, the lowering-cost split, the
cascade parts cache and its command line."""
from __future__ import annotations

import json
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


def test_cascade_parts_cache_is_written_atomically_and_survives_a_torn_record(tmp_path):
    """The parts record is rewritten, never trusted when unreadable; no temporary file is left."""
    from experiments.table1 import export_cascade_parts
    first = export_cascade_parts(tmp_path, formats=("onnx",))
    assert {p: set(d) for p, d in first.items()} == {"mesh": {"onnx"}, "iris": {"onnx"}, "lips": {"onnx"}}
    record = json.loads((tmp_path / "parts.json").read_text())
    assert record["parts"]["iris"] == {"onnx": "cascade_iris.onnx"}
    mtime = first["mesh"]["onnx"].stat().st_mtime_ns
    said = []
    export_cascade_parts(tmp_path, formats=("onnx",), progress=said.append)
    assert not said and first["mesh"]["onnx"].stat().st_mtime_ns == mtime       # fresh: reused
    (tmp_path / "parts.json").write_text('{"key": ')                              # a torn write
    export_cascade_parts(tmp_path, formats=("onnx",), progress=said.append)
    assert len(said) == 3 and json.loads((tmp_path / "parts.json").read_text())["key"] == record["key"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_command_line_says_what_is_missing_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.table1", "--build", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("table1: error: no build record of attention_mesh")
    assert len(proc.stderr.strip().splitlines()) == 1

