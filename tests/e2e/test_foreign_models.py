"""Users' own models, end to end through the CLI: three public GridSample architectures
(tests/e2e/foreign_models.py, seeded random weights) built from a spec file — the STN tutorial and
the deformable sampler as ONNX files exported here, the flow warp as a `--torch` factory found in
the working directory — to ONNX, TFLite fp32/fp16 (GPU-clean) and Core ML fp32/fp16, validated on
ONNX Runtime, TFLite (CPU), LiteRT's GPU accelerator and the MIL reference evaluator; each
released into a local store and pulled back verified; and the STN built to int8."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from modelzoo.tolerances import evaluate, resolve
from runtime.runners import get_runner

from meshport_cli import GPU, REPO, RUNNERS, cli, popen

HERE = Path(__file__).resolve().parent

# Tolerances, from the arithmetic of each model (rtol is × max|reference| of the output).
#
# fp32 (ONNX Runtime, TFLite on the CPU, the MIL evaluator in fp32): the samplers compute pixel
# coordinates below 32 px, each fp32 op off by ≤ ½ ulp(32) = 2⁻¹⁹ ≈ 2e-6 px, about ten ops deep in
# the lowering (≲ 2e-5 px); a sampled value moves by that times the image gradient (≤ 1 per px for
# values in [0, 1]). The convolutions and linear layers sum ≤ 320 products in another order
# (≲ 320·2⁻²⁴ ≈ 2e-5 relative in the worst case, ~1e-6 typically). A few layers deep that stays
# below 1e-4 of the output scale: rtol 1e-4 (measured ≲ 1e-5).
#
# fp16 weights (TFLite fp16 runs its fp16 weights in fp32 on the CPU; Core ML fp16 is fp16
# throughout): every weight off by ≤ 2⁻¹¹ ≈ 4.9e-4 relative, sums of n products of random-sign
# errors grow as √n·4.9e-4 (√320·4.9e-4 ≈ 9e-3 for the widest layer); Core ML's fp16 activations
# add 2⁻¹¹ per op, and fp16 sampling coordinates at 16–32 px are spaced 2⁻⁶ = 1/64 px, which moves a
# sampled value by up to 1/64 of the image's largest step between neighbouring pixels (≤ 1).
FP32 = '"*/fp32" = { rtol = 1e-4, reason = "fp32: coordinates < 32 px carry ≲ 2e-5 px after ~10 ops (½ ulp(32) each), sums of ≤ 320 products reordered ≲ 2e-5 relative; 1e-4 of the output scale covers both with margin" }'

MODELS = {
    "stn_tutorial": dict(source="onnx", onnx="stn.onnx", opset=20, shape=[1, 1, 28, 28], vr=[0.0, 1.0],
                         outputs=["log_probs"], tolerances=FP32 + """
"*/fp16" = { rtol = 3e-2, reason = "fp16 weights: ≤ 2⁻¹¹ each, √n growth over sums of ≤ 320 products (≈ 9e-3) and through the localisation net's θ into the sampled image (1/64 px at 28 px in fp16, on a classifier with gain ~1): 3e-2 of max|log p| (~2.4)" }
"tflite/fp16-compute" = { rtol = 3e-2, reason = "the GPU accelerator's fp16 arithmetic: 2⁻¹¹ per op and 1/64-px sampling coordinates at 28 px, as Core ML fp16" }
"""),
    "flow_warp": dict(source="torch", factory="foreign_models:flow_warp", shape=[1, 3, 24, 32], vr=[0.0, 1.0],
                      rgb=True, outputs=["warped", "flow"], tolerances=FP32 + """
"*/fp16" = { rtol = 2e-2, reason = "fp16: flow = 3·tanh(conv(relu(conv))) off by ≲ √(16·9)·2⁻¹¹·3 ≈ 2e-2 px of its 3-px scale in the worst case; the coordinate base + flow (< 32 px) is spaced 1/64 px in fp16, so the warp moves by ≲ (2e-2 + 1/64) px × the image step (≤ 1): 2e-2 of max|ref| on both outputs" }
"tflite/fp16-compute" = { rtol = 4e-2, reason = "the GPU accelerator's fp16 arithmetic adds a rounding of every normalised coordinate (2⁻¹¹ of ≤ 1.2, i.e. ≤ 1/55 px at 32 px) to the fp16 error above: 4e-2" }
"""),
    "deform_sampler": dict(source="onnx", onnx="deform.onnx", opset=17, shape=[1, 4, 16, 16], vr=[-1.0, 1.0],
                           outputs=["out"], tolerances=FP32 + """
"*/fp16" = { rtol = 2e-2, reason = "fp16: offsets (a 3×3 conv over 4 channels, weights ×4) off by ≲ √36·2⁻¹¹·|Δp| ≈ 6e-3 px, tap coordinates < 16 px spaced 1/128 px in fp16, values in [−1, 1] with steps ≤ 2 between pixels: ≲ 2·(6e-3 + 1/128) ≈ 3e-2 per tap, averaged over 36 random-sign taps by the 1×1 conv (÷√36): ≲ 1e-2 of the output scale; 2e-2" }
"tflite/fp16-compute" = { rtol = 3e-2, reason = "the GPU accelerator's fp16 arithmetic also rounds the normalised tap coordinates (2⁻¹¹ of ≤ 1.3: ≤ 1/200 px at 16 px) and the 36-term 1×1 conv sum: 3e-2" }
"""),
}
TARGETS = [("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "fp16"), ("coreml", "fp32"), ("coreml", "fp16")]


def spec_text(mid: str, m: dict) -> str:
    lines = [f'id = "{mid}"', f'description = "foreign model {mid} (seeded random weights)"']
    if m["source"] == "torch":
        lines.append(f"opset = {m.get('opset', 17)}")
    if m.get("targets"):
        lines.append("targets = " + json.dumps(m["targets"]))
    lines += ["", "[[inputs]]", 'name = "image"' if m["source"] != "onnx" or mid != "deform_sampler" else
              'name = "features"', f"shape = {m['shape']}", 'layout = "NCHW"', f"value_range = {m['vr']}"]
    if m.get("rgb"):
        lines.append('channel_order = "RGB"')
    for o in m["outputs"]:
        lines += ["", "[[outputs]]", f'name = "{o}"']
    return "\n".join(lines + ["", "[tolerances]", m["tolerances"].strip(), ""])




def export_onnx(work: Path) -> None:
    """The ONNX files a user would bring, exported with torch's TorchScript exporter."""
    import torch
    sys.path.insert(0, str(work))
    try:
        import foreign_models as fm
    finally:
        sys.path.remove(str(work))
    for mid, factory, shape, name in (("stn_tutorial", fm.stn_classifier, (1, 1, 28, 28), "image"),
                                      ("deform_sampler", fm.deform_sampler, fm.DEFORM_SHAPE, "features")):
        m = MODELS[mid]
        torch.onnx.export(factory(), (torch.rand(*shape),), str(work / m["onnx"]), input_names=[name],
                          output_names=m["outputs"], opset_version=m["opset"], dynamo=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The three models built (in parallel) and validated from the CLI, in a working directory
    that holds the user's files: the model code, the ONNX exports, the spec files."""
    work = tmp_path_factory.mktemp("foreign")
    shutil.copy(HERE / "foreign_models.py", work / "foreign_models.py")
    export_onnx(work)
    out = work / "out"
    procs = {}
    for mid, m in MODELS.items():
        (work / f"{mid}.toml").write_text(spec_text(mid, m))
        src = ["--onnx", m["onnx"]] if m["source"] == "onnx" else ["--torch", m["factory"]]
        procs[mid] = popen("build", "--spec", f"{mid}.toml", *src, "-o", "out", cwd=work)
    for mid, p in procs.items():
        _, err = p.communicate()
        assert p.returncode == 0, f"build {mid}: {err[-3000:]}"
    procs = {mid: popen("validate", mid, "--build", str(out), cwd=REPO) for mid in MODELS}   # another cwd
    for mid, p in procs.items():
        _, err = p.communicate()
        assert p.returncode == 0, f"validate {mid}: {err[-3000:]}"
    return work, out


def _parity(out: Path, mid: str) -> dict:
    return json.loads((out / mid / "parity.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("mid", list(MODELS))
def test_builds_every_target_gpu_clean(built, mid):
    _, out = built
    record = json.loads((out / mid / "build.json").read_text())
    got = {(a["format"], a["precision"]): a for a in record["artifacts"]}
    assert set(TARGETS) <= set(got)
    for prec in ("fp32", "fp16"):
        gpu = got[("tflite", prec)]["gpu_check"]
        assert gpu["ok"], gpu
        assert "static" in gpu["checks"] and ("dynamic" in gpu["checks"]) == GPU
        assert not gpu.get("cpu_fallback_ops") and not gpu.get("unsupported")
    assert (out / mid / "source" / "source.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("mid", list(MODELS))
def test_validate_passes_on_every_runner_with_real_numbers(built, mid):
    """Every (format, precision) × its runners has edges that pass, against the reference, and
    fp32 stays well below its bound."""
    _, out = built
    parity = _parity(out, mid)
    assert parity["passed"] and not parity["errors"]
    edges = [e for e in parity["edges"] if e["reference"] == "pytorch"]
    seen = {}
    for e in edges:
        assert e["passed"], e
        runner = e["candidate"].split("@")[1]
        seen.setdefault((e["format"], e["precision"]), set()).add(runner)
    for fmt, prec in TARGETS:
        assert RUNNERS[fmt] <= seen[(fmt, prec)], (fmt, prec, seen)
    spec, ref, _ = _outputs(out, mid, f"{mid}.onnx", "onnxruntime")
    worst: dict[str, tuple[float, float]] = {}
    for e in edges:
        for name, o in e["outputs"].items():
            key = f"{e['candidate']}{' (fp16 compute)' if e['compute'] else ''} {name}"
            worst[key] = max(worst.get(key, (0.0, 0.0)), (o["max_abs"], o["tolerance"]["rtol"]))
    print("\n" + "\n".join(f"{mid}: {k}: max abs {m:.2e} (rtol {r:g})" for k, (m, r) in sorted(worst.items())))
    for e in edges:
        if e["precision"] == "fp32" and e["compute"] is None and e["input_set"] == "seeded-0":
            for name, o in e["outputs"].items():
                bound = o["tolerance"]["rtol"] * float(np.abs(ref[name]).max())
                assert o["max_abs"] <= 0.1 * bound, (e["candidate"], name, o["max_abs"], bound)


def _outputs(out: Path, mid: str, artifact: str, runner: str):
    """The reference's and one artifact's outputs on the first seeded input, rerun here."""
    import modelzoo
    from runtime.record import BuildRecord
    from runtime.runners import runner_for
    from validation.inputs import input_sets
    modelzoo.use_build_dir(out)
    spec = modelzoo.get_spec(mid)
    record = BuildRecord.load(out, spec)
    case = input_sets(spec)[0]
    entry = next(a for a in record.artifacts if a.path == artifact)
    name = spec.inputs[0].name
    with get_runner("pytorch")(spec) as r:
        ref = r.infer({name: case.array})
    with runner_for(runner, spec, record.root, entry) as r:
        got = r.infer({name: case.array})
    return spec, ref, got


@pytest.mark.slow
@pytest.mark.parametrize("mid", list(MODELS))
def test_an_output_shifted_past_its_bound_fails(built, mid):
    """The real fp32 TFLite outputs pass their resolved bound and fail it when one element moves
    by 1.05 × the bound."""
    _, out = built
    spec, ref, got = _outputs(out, mid, f"{mid}-fp32.tflite", "tflite")
    for name in ref:
        bounds = resolve(spec, "tflite", "fp32", name)
        assert evaluate(name, bounds, ref[name], got[name]).passed
        bound = bounds.abs_bound(ref[name])
        shifted = ref[name].copy().reshape(-1)
        shifted[shifted.size // 2] += 1.05 * bound
        verdict = evaluate(name, bounds, ref[name], shifted.reshape(ref[name].shape))
        assert not verdict.passed and "max abs" in verdict.failures[0]


@pytest.mark.slow
@pytest.mark.parametrize("mid", list(MODELS))
def test_release_and_pull_from_the_cli(built, mid, tmp_path):
    """Each model (ONNX or factory source) released into a local store from its build directory,
    then pulled back verified (the release's key is trusted): the files match."""
    work, out = built
    store, pulled = tmp_path / "store", tmp_path / "pulled"
    r = cli("release", mid, "--version", "1.0.0", "-o", str(out), "--store", str(store), "--runs", "3", cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{mid}@1.0.0 published" in r.stdout
    p = cli("pull", f"{mid}@1.0.0", "--store", str(store), "-o", str(pulled), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "UNVERIFIED" not in p.stderr + p.stdout
    record = json.loads((out / mid / "build.json").read_text())
    names = {a["path"] for a in record["artifacts"] if not a["path"].endswith(".mlpackage")}
    assert {f"{mid}.onnx", f"{mid}-fp32.tflite", f"{mid}-fp16.tflite"} <= names
    for name in names:
        assert (pulled / name).read_bytes() == (out / mid / name).read_bytes(), name
    manifest = json.loads((store / mid / "1.0.0" / "manifest.json").read_text())
    assert manifest["signature"]


INT8 = dict(source="onnx", onnx="stn.onnx", shape=[1, 1, 28, 28], vr=[0.0, 1.0], outputs=["log_probs"],
            targets=["onnx/fp32", "tflite/int8"], tolerances=FP32 + """
"tflite/int8" = { rtol = 0.25, reason = "int8 weights per channel: each off by ≤ half a step of max|w|/127 (2⁻⁸ of the channel's largest), 8× the fp16 rounding, through the same √n growth over sums of ≤ 320 products: 8 × 3e-2 of max|log p|" }
"tflite/fp16-compute" = { rtol = 3e-2, reason = "the GPU accelerator's fp16 arithmetic, as for the float STN" }
""")


@pytest.mark.slow
def test_int8_of_a_users_one_channel_model_from_the_cli(tmp_path):
    """int8 of a model that is not a face model (one 28×28 channel): calibrated on seeded inputs of
    its own shape and range, GPU-clean, and within its bound on every TFLite runner."""
    export_onnx(tmp_path)
    (tmp_path / "stn_int8.toml").write_text(spec_text("stn_int8", INT8))
    b = cli("build", "--spec", "stn_int8.toml", "--onnx", "stn.onnx", "-o", "out", cwd=tmp_path)
    assert b.returncode == 0, b.stderr[-3000:]
    v = cli("validate", "stn_int8", "--build", str(tmp_path / "out"), cwd=tmp_path)
    assert v.returncode == 0, v.stderr[-3000:]
    out = tmp_path / "out"
    record = json.loads((out / "stn_int8" / "build.json").read_text())
    int8 = next(a for a in record["artifacts"] if a["precision"] == "int8")
    assert int8["gpu_check"]["ok"] and not int8["gpu_check"]["flagged"]
    parity = _parity(out, "stn_int8")
    assert parity["passed"]
    edges = [e for e in parity["edges"] if e["reference"] == "pytorch" and e["precision"] == "int8"]
    assert {e["candidate"].split("@")[1] for e in edges} >= RUNNERS["tflite"]
    spec, ref, _ = _outputs(out, "stn_int8", "stn_int8.onnx", "onnxruntime")
    bound = 0.25 * float(np.abs(ref["log_probs"]).max())
    for e in edges:       # measured ≤ 3.4e-3 (GPU fp16), 1.2e-3 on the CPU, against a bound of ~0.6
        assert e["passed"] and e["outputs"]["log_probs"]["max_abs"] <= 0.1 * bound, e["candidate"]
