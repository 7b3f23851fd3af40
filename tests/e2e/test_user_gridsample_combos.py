"""`meshport build --onnx` of a user graph with a GridSample in each of the 12 mode × padding ×
align_corners combinations, on a grid computed at run time (1.3·tanh(conv(x)), out of range in
both directions): a TFLite that is GPU-only compilable, equal to ONNX Runtime within 1e-5 of each
output's scale on the CPU and on LiteRT's GPU accelerator in fp32 arithmetic."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import foreign_models as fm
from meshport_cli import GPU, cli

NAMES = [fm.combo_name(*c) for c in fm.COMBOS]
RTOL = 1e-5

# fp32: ONNX Runtime and the lowering compute each pixel coordinate (< 2·16 px) with the same
# formula, the lowering's weights a few more fp32 ops deep (reflection ~10), each off by ≤ ½ ulp(32)
# = 2⁻¹⁹: a weight off by ≲ 10·2⁻¹⁹/1 ≈ 2e-5 worst case, a few e-6 in practice (measured in
# tests/converters/test_grid_sample.py); nearest picks the same pixel from the same coordinate.
# GPU fp16 compute: the grid itself is computed in fp16 (a 27-term conv, tanh, ×1.3: ≲ 3·2⁻¹¹·1.3
# ≈ 2e-3 normalised, ≈ 1.6e-2 px at 16 px), weights from fp16 coordinates spaced 1/128 px: a
# bilinear value moves by ≲ (1.6e-2 + 1/128) × its largest step between pixels (≤ 1 for inputs in
# [0, 1]) plus four fp16 products: rtol 5e-2. A nearest pick whose coordinate lies within 2e-2 px
# of a rounding boundary moves one pixel: up to one whole step (≤ 1) — atol 1 bounds only that.
SPEC = """\
id = "gridsample_combos"
targets = ["onnx/fp32", "tflite/fp32"]

[[inputs]]
name = "x"
shape = [1, 3, 12, 16]
layout = "NCHW"
value_range = [0.0, 1.0]

{outputs}

[tolerances]
"*/fp32" = {{ rtol = 1e-5, reason = "fp32: the same coordinate formula as ONNX Runtime, weights ≲ 10 fp32 ops deep on coordinates < 32 px (½ ulp = 2⁻¹⁹ each): ≲ 2e-5 worst case, a few e-6 measured; nearest exact" }}
{gpu}
"""


def _spec() -> str:
    outputs = "\n".join(f'[[outputs]]\nname = "{n}"\n' for n in NAMES)
    gpu = "\n".join(
        f'"tflite/fp16-compute/{n}" = {{ rtol = 5e-2, reason = "GPU fp16: grid ≲ 1.6e-2 px + 1/128-px coordinates '
        f'× steps ≤ 1, four fp16 taps" }}' if n.startswith("bilinear") else
        f'"tflite/fp16-compute/{n}" = {{ atol = 1.0, reason = "GPU fp16: a nearest pick within 2e-2 px of a rounding '
        f'boundary moves one pixel, up to one whole step (≤ 1 for inputs in [0, 1])" }}' for n in NAMES)
    return SPEC.format(outputs=outputs, gpu=gpu)



@pytest.fixture(scope="module")
def combos(tmp_path_factory):
    import torch
    work = tmp_path_factory.mktemp("combos")
    model = fm.grid_sample_combos()
    x = torch.rand(*fm.COMBO_SHAPE)
    torch.onnx.export(model, (x,), str(work / "combos.onnx"), input_names=["x"], output_names=NAMES,
                      opset_version=17, dynamo=False)
    (work / "combos.toml").write_text(_spec())
    r = cli("build", "--spec", "combos.toml", "--onnx", "combos.onnx", "-o", "out", cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    v = cli("validate", "gridsample_combos", "--build", str(work / "out"), cwd=work)
    assert v.returncode == 0, v.stderr[-3000:]
    return work, work / "out" / "gridsample_combos"


def test_the_grid_reaches_out_of_range():
    import torch
    m = fm.grid_sample_combos()
    x = torch.from_numpy(np.random.default_rng(0).random(fm.COMBO_SHAPE, dtype=np.float32))
    with torch.no_grad():
        g = 1.3 * torch.tanh(m.conv(x))
    assert g.max() > 1.1 and g.min() < -1.1 and (g.abs() < 0.9).float().mean() > 0.1


@pytest.mark.slow
def test_every_combination_is_gpu_clean_and_equals_onnxruntime(combos):
    _, root = combos
    record = json.loads((root / "build.json").read_text())
    (tfl,) = [a for a in record["artifacts"] if a["format"] == "tflite"]
    assert tfl["gpu_check"]["ok"], tfl["gpu_check"]
    assert ("dynamic" in tfl["gpu_check"]["checks"]) == GPU
    assert not {"GATHER_ND", "GRID_SAMPLE"} & set(tfl["op_counts"])
    parity = json.loads((root / "parity.json").read_text())
    assert parity["passed"]
    edges = [e for e in parity["edges"] if e["reference"] == "pytorch"]
    runners = {e["candidate"].split("@")[1] for e in edges}
    assert {"onnxruntime", "tflite"} <= runners and (("tflite-gpu" in runners) == GPU)
    import modelzoo
    from validation.inputs import input_sets
    modelzoo.use_build_dir(root.parent)
    want = {c.name: _ort(root / "source" / "model.onnx", c.array)
            for c in input_sets(modelzoo.get_spec("gridsample_combos"))}
    worst = 0.0
    for e in edges:
        assert e["passed"] and set(e["outputs"]) == set(NAMES), e["candidate"]
        if e["compute"] is None:       # fp32 arithmetic: within 1e-5 of each output's scale
            for name, o in e["outputs"].items():
                scale = float(np.abs(want[e["input_set"]][name]).max())
                assert o["tolerance"]["rtol"] == RTOL and o["max_abs"] <= RTOL * scale, (e["candidate"], name, o)
                worst = max(worst, o["max_abs"] / scale)
    print(f"worst fp32 error / max|ref|: {worst:.2e}")


def _ort(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip(NAMES, sess.run(NAMES, {"x": x})))


@pytest.mark.slow
@pytest.mark.skipif(not GPU, reason="LiteRT's GPU accelerator is unavailable here (no Vulkan adapter)")
def test_on_the_gpu_accelerator_in_fp32(combos):
    """The artifact on the GPU alone, fp32 arithmetic: each output within 1e-5 of its scale of
    ONNX Runtime on the user's file; nearest equal."""
    import modelzoo
    from runtime.record import BuildRecord
    from runtime.runners import runner_for
    work, root = combos
    modelzoo.use_build_dir(root.parent)
    spec = modelzoo.get_spec("gridsample_combos")
    entry = BuildRecord.load(root.parent, spec).artifact("tflite", "fp32")
    rng = np.random.default_rng(7)
    for _ in range(2):
        x = rng.random(fm.COMBO_SHAPE, dtype=np.float32)
        want = _ort(work / "combos.onnx", x)
        with runner_for("tflite-gpu-f32", spec, root, entry) as r:
            got = r.infer({"x": x})
        for name in NAMES:
            err = float(np.abs(got[name] - want[name]).max())
            assert err <= RTOL * float(np.abs(want[name]).max()), (name, err)
