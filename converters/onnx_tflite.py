"""ONNX → TFLite (fp32, fp16) through onnx2tf, made to stay on the GPU delegate.

Recipe: simplify (onnxsim) → lower GridSample (lowering.py) → onnx2tf (offline: the calibration
file it would download is provided; the venv's bin is on PATH for its onnxsim call) → TFLite
passes (tflite_passes.pipeline(): strip the negative-index guards onnx2tf puts around runtime
GATHERs, re-fuse PReLUs, ADD_N → ADD, drop the lowering's identity convs, hybrid FCs as float;
each checks its own postconditions and, but for the hybrid-FC one that changes outputs by design,
is verified against the unpassed model on a seeded input) → spec names for inputs/outputs → quick
parity gate against PyTorch → GPU-delegate check."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modelzoo.data import face_calibration_set
from modelzoo.spec import ModelSpec

from . import gate
from runtime.runners import RunnerError, get_runner
from runtime.files import atomic_path

from .base import Artifact, ConversionError, Step, io_specs, register_step
from .onnx_rewrites import gpu_rewrites
from .gpu_check import GpuCompatibilityError, require_gpu_compatible
from .lowering import lower_gridsample, sum_residual_adds
from .tflite_passes import nchw_outputs, op_histogram, pipeline, rename_io

STEP = "onnx->tflite"
# onnx2tf looks for this file in its working directory before downloading one.
ONNX2TF_CALIBRATION = "calibration_image_sample_data_20x128x128x3_float32.npy"
# precision → onnx2tf output variants to try, in order of preference. int8: full integer
# quantisation calibrated on real face crops first; int8 weights with float activations
# (dynamic range) when the calibrated one fails the GPU check or the parity gate.
VARIANTS = {"fp32": ("float32",), "fp16": ("float16",), "int8": ("integer_quant", "dynamic_range_quant")}


def run_native(model: bytes | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run a one-input TFLite model (on XNNPACK) on an NHWC feed, whatever its input is named (onnx2tf
    decorates names until `rename_io` sets the spec's); outputs by tensor name."""
    with get_runner("tflite")(None, model) as runner:
        return runner.run_native({runner.input_names[0]: x})


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def calibration_set(spec: ModelSpec, count: int = 20) -> np.ndarray:
    """int8 calibration inputs for the model's one 4-D input, channels-last as onnx2tf feeds them:
    the spec's own samples first (a user model's), then — for a square RGB image in [0, 1], the
    zoo's face models — augmented real face crops, else seeded inputs over its value range."""
    from modelzoo.user import samples_of
    inp = spec.inputs[0]
    shape = tuple(1 if d is None else int(d) for d in inp.shape)
    if len(shape) != 4 or inp.layout != "NCHW":
        raise ConversionError(STEP, f"int8 calibration needs a 4-D NCHW input; {inp.name} is {list(shape)} "
                                    f"{inp.layout or 'without a layout'}")
    chw = shape[1:]
    rows = [a.reshape((-1,) + chw) for _, a in samples_of(spec)]    # samples have the input's shape
    picked = np.concatenate(rows)[:count] if rows else np.empty((0,) + chw, np.float32)
    rest = count - len(picked)
    if rest and inp.channel_order == "RGB" and chw[1] == chw[2] and (inp.value_range or (0.0, 1.0)) == (0.0, 1.0):
        fill = face_calibration_set(chw[2], rest).transpose(0, 3, 1, 2)
    else:                   # the gate's seeded inputs, one seed each
        fill = np.concatenate([gate.seeded_input(spec, seed) for seed in range(rest)] or [picked[:0]])
    return np.ascontiguousarray(np.concatenate([picked, fill]).astype(np.float32).transpose(0, 2, 3, 1))


def run_onnx2tf(onnx_path: Path, workdir: Path, input_name: str, calibration: np.ndarray | None = None) -> Path:
    """onnx2tf on `workdir/<onnx file>` with the offline recipe (calibration files in place, the
    venv's `bin` on PATH); with `calibration` (NHWC inputs for `input_name`, calibration_set), the
    int8 variants too, fed those values as they are. Returns onnx2tf's output directory
    (`<stem>_float32.tflite`, `_float16`, …)."""
    np.save(workdir / ONNX2TF_CALIBRATION, face_calibration_set(128, 20))
    args = ["-i", onnx_path.name, "-o", "tf", "-n"]
    if calibration is not None:
        np.save(workdir / "calibration.npy", calibration)
        c = calibration.shape[-1]
        zeros, ones = f"[[[[{','.join(['0.0'] * c)}]]]]", f"[[[[{','.join(['1.0'] * c)}]]]]"   # mean 0, std 1
        args += ["-oiqt", "-qt", "per-channel", "-cind", input_name, "calibration.npy", zeros, ones]
    bindir = os.path.dirname(sys.executable)
    exe = shutil.which("onnx2tf", path=bindir) or shutil.which("onnx2tf")
    if exe is None:
        raise ConversionError(STEP, "onnx2tf is not installed in this environment")
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([exe, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not (workdir / "tf" / f"{onnx_path.stem}_float32.tflite").exists():
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise ConversionError(STEP, "onnx2tf failed: " + (lines[-1] if lines else f"exit {proc.returncode}"))
    return workdir / "tf"


def onnx_to_tflite(onnx_path: Path, model: torch.nn.Module, spec: ModelSpec, out_paths: dict[str, Path],
                   *, require_gpu: bool = True) -> list[Artifact]:
    """Convert one ONNX file into the TFLite precisions named in `out_paths` ({"fp32": path, …})."""
    import onnx
    from onnxsim import simplify

    unknown = sorted(set(out_paths) - set(VARIANTS))
    if unknown:
        raise ConversionError(STEP, f"unsupported TFLite precision(s) {unknown}; supported: {sorted(VARIANTS)}")
    try:
        proto = onnx.load(str(onnx_path))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ConversionError(STEP, f"input is not a valid ONNX model: {onnx_path} ({exc})") from exc
    t0 = time.perf_counter()
    feeds = gate.gate_inputs(spec)
    refs = {k: gate.torch_reference(model, v) for k, v in feeds.items()}
    calibration = calibration_set(spec) if "int8" in out_paths else None
    with tempfile.TemporaryDirectory(prefix="meshport-tflite-") as tmp:
        work = Path(tmp)
        simplified, ok = simplify(proto)
        if not ok:
            raise ConversionError(STEP, "onnxsim could not validate the simplified model")
        lowered, n_sums = sum_residual_adds(lower_gridsample(gpu_rewrites(simplified)))
        lowered_path = work / f"{spec.id}.onnx"
        onnx.save(lowered, str(lowered_path))
        produced = run_onnx2tf(lowered_path, work, spec.inputs[0].name, calibration)
        prepass = {"gridsample_lowered": True, "residual_adds_as_sum": n_sums}
        artifacts = []
        for precision, out_path in out_paths.items():
            rejected: list[dict] = []
            for variant in VARIANTS[precision]:
                try:
                    art = _finish(produced / f"{lowered_path.stem}_{variant}.tflite", spec, precision, out_path,
                                  feeds, refs, require_gpu)
                except (ConversionError, GpuCompatibilityError) as exc:
                    if variant == VARIANTS[precision][-1]:
                        if rejected:
                            raise ConversionError(STEP, f"no {precision} variant passes: " + "; ".join(
                                f"{r['variant']}: {r['reason']}" for r in rejected) + f"; {variant}: {exc}") from exc
                        raise
                    rejected.append({"variant": variant, "reason": str(exc).splitlines()[0][:300]})
                    continue
                art.record.update({"variant": variant, "rejected_variants": rejected, "onnx_prepass": prepass,
                                   "seconds": round(time.perf_counter() - t0, 3)})
                artifacts.append(art)
                break
    return artifacts


def _finish(path: Path, spec: ModelSpec, precision: str, out_path: Path, feeds: dict, refs: dict,
            require_gpu: bool) -> Artifact:
    """TFLite passes (verified), spec names, parity gate and GPU check of one onnx2tf output."""
    in_name = spec.inputs[0].name
    if not path.exists():
        raise ConversionError(STEP, f"onnx2tf produced no {path.name}")
    raw = path.read_bytes()
    probe = nhwc(gate.seeded_input(spec, seed=1))
    before = run_native(raw, probe)
    counts, passed = {}, raw
    for tflite_pass in pipeline():      # tflite_passes' registered passes, in order
        passed, counts[tflite_pass.record_key] = tflite_pass(passed)
        after = run_native(passed, probe)
        if tflite_pass.exact and any(not np.allclose(before[k], after[k], rtol=1e-6, atol=1e-6) for k in before):
            raise ConversionError(STEP, f"{tflite_pass.label} changed the outputs")
        before = after      # an inexact pass (it says what it changes) is judged by the parity gate below
    final = rename_io(passed, [in_name], [o.name for o in spec.outputs])
    final, counts["outputs_made_nchw"] = nchw_outputs(final, {o.name: tuple(1 if d is None else d for d in o.shape)
                                                              for o in spec.outputs})
    with atomic_path(out_path) as tmp_out:
        tmp_out.write_bytes(final)
        gpu = _gpu_report(tmp_out, require_gpu)
        with get_runner("tflite")(spec, tmp_out, input_layout="NHWC") as runner:
            gots = {feed: runner.infer({in_name: x}) for feed, x in feeds.items()}
        parity = gate.check(STEP, spec, "tflite", precision, refs, gots)
        gpu["dynamic"] = _gpu_gate(tmp_out, spec, precision, feeds, refs, require_gpu)
        gpu["checks"] = ["static"] + (["dynamic"] if gpu["dynamic"]["ran"] else [])
        gpu["ok"] = gpu["ok"] and gpu["dynamic"].get("ok", True)
    return Artifact(out_path, "tflite", precision, *io_specs(spec, image_layout="NHWC"), record={
        "step": STEP, "options": {"require_gpu": require_gpu,
                                  "lowering": "GridSample → 1-D int32 GATHERs, fp16-exact float index math"},
        "quick_parity": parity, **counts,
        "op_counts": op_histogram(final),
        "gpu_check": gpu}).finalize()


def _gpu_gate(path: Path, spec: ModelSpec, precision: str, feeds: dict, refs: dict, require: bool) -> dict:
    """The dynamic GPU check, where LiteRT's GPU accelerator works here: the artifact compiled on
    the GPU alone and the quick gate run on it in both arithmetics (enforce_f32 against the
    artifact's tolerance, the default fp16 against the fp16-compute one)."""
    from runtime.litert_gpu import availability
    device, why = availability()
    if device is None:
        return {"ran": False, "reason": why}
    record: dict = {"ran": True, "device": device.to_json()}
    in_name = spec.inputs[0].name
    try:
        for mode, runner_name in (("enforce_f32", "tflite-gpu-f32"), ("fp16", "tflite-gpu")):
            cls = get_runner(runner_name)
            with cls(spec, path, input_layout="NHWC") as runner:
                gots = {feed: runner.infer({in_name: x}) for feed, x in feeds.items()}
            record[mode] = gate.check(f"{STEP} (GPU accelerator)", spec, "tflite", precision, refs, gots, cls.compute)
    except (RunnerError, ConversionError) as exc:
        if require:
            raise ConversionError(STEP, f"GPU check on {device.describe()}: {exc}") from exc
        record["error"] = str(exc)
    record["ok"] = "error" not in record
    return record


def _gpu_report(path: Path, require: bool) -> dict:
    """The static GPU-delegate check; raises GpuCompatibilityError unless opted out."""
    return require_gpu_compatible(path, allow=not require).to_json()


register_step(Step(STEP, makes={("tflite", p): f"-{p}.tflite" for p in VARIANTS}, needs=(("onnx", "fp32"),),
                   options=("require_gpu",),
                   run=lambda inputs, outs, opts: onnx_to_tflite(inputs.artifacts[("onnx", "fp32")], inputs.model,
                                                                 inputs.spec, {p: path for (_, p), path in outs.items()},
                                                                 **opts)))
