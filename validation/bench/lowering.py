"""The GridSample lowerings side by side on one zoo model (`meshport bench MODEL --lowering compare`):
the onnx→tflite conversion time with the fused fast path (what builds choose) and with the
general lowering forced on the same ONNX graph, interleaved (A B A B …: this machine is noisy, so
both see the same drift), then the TFLite CPU latency of the two fp32 artifacts, again
interleaved run by run, their op counts, the static GPU-delegate check of each, and the parity of
the general-lowered artifact against the fast-path one (on the sample face and a seeded input,
against the model's fp32 TFLite tolerance). JSON out; nothing here asserts a speed."""
from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

import modelzoo

from .harness import BenchError, face_feed, tool_versions
from .stats import host_description, summarize

ORDER = ("fused", "general")
Progress = Callable[[str], None]


def compare_lowerings(model_id: str = "attention_mesh", onnx_path: Path | str | None = None, rounds: int = 3,
                      runs: int = 50, warmup: int = 10, threads: int = 1, workdir: Path | str | None = None,
                      progress: Progress | None = None) -> dict:
    """Convert `model_id`'s ONNX (`onnx_path`, or exported here first, untimed) to fp32 TFLite
    `rounds` times per lowering, interleaved, and measure both artifacts; returns the JSON record."""
    if rounds < 1 or runs < 1 or warmup < 0 or threads < 1:
        raise BenchError(f"need rounds ≥ 1, runs ≥ 1, warmup ≥ 0 and threads ≥ 1 (got rounds={rounds}, "
                         f"runs={runs}, warmup={warmup}, threads={threads})")
    from converters.lowering import gridsample_lowering
    from converters.onnx_tflite import onnx_to_tflite

    say = progress or (lambda msg: None)
    spec = modelzoo.get_spec(model_id)
    model = modelzoo.load_model(model_id, pretrained=modelzoo.has_pretrained(model_id))
    with tempfile.TemporaryDirectory(prefix="meshport-lowering-", dir=workdir) as tmp:
        work = Path(tmp)
        if onnx_path is None:
            from converters.torch_onnx import torch_to_onnx
            say(f"exporting {model_id} to ONNX")
            onnx_path = work / f"{model_id}.onnx"
            torch_to_onnx(model, spec, onnx_path)
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise BenchError(f"no ONNX file at {onnx_path}")
        seconds: dict[str, list[float]] = {k: [] for k in ORDER}
        records: dict[str, dict] = {}
        paths = {k: work / f"{model_id}-{k}-fp32.tflite" for k in ORDER}
        for r in range(rounds):
            for lowering in ORDER:
                say(f"round {r + 1}/{rounds}: converting with the {lowering} lowering")
                with gridsample_lowering(lowering):
                    t0 = time.perf_counter()
                    (art,) = onnx_to_tflite(onnx_path, model, spec, {"fp32": paths[lowering]}, require_gpu=False)
                    seconds[lowering].append(time.perf_counter() - t0)
                records[lowering] = art.record
        say(f"timing both artifacts, {runs} interleaved runs each")
        latency = _latency(spec, paths, runs, warmup, threads)
        parity = _parity(spec, paths)
        out = {"model": model_id, "kind": "gridsample-lowering-compare", "onnx": onnx_path.name,
               "order": "interleaved: " + " ".join(ORDER) + " per round (conversions), per run (latency)",
               "rounds": rounds, "runs": runs, "warmup": warmup, "threads": threads, "runtime": "tflite",
               "precision": "fp32", "device": host_description(), "tool_versions": tool_versions(),
               "lowerings": {}}
        for lowering in ORDER:
            raw = paths[lowering].read_bytes()
            conv = summarize([s * 1000 for s in seconds[lowering]])
            rec = records[lowering]
            gpu = rec.get("gpu_check", {})
            out["lowerings"][lowering] = {
                "convert_s": [round(s, 3) for s in seconds[lowering]],
                "convert_median_s": round(conv.median_ms / 1000, 3),
                "convert_min_s": round(conv.min_ms / 1000, 3),
                "latency_ms": latency[lowering],
                "ops": sum(rec["op_counts"].values()), "op_counts": rec["op_counts"],
                # the static GPU-delegate check (gpu_check.py); the build's dynamic check on LiteRT's GPU
                # accelerator, where it ran, separately (its error, if any, as the build recorded it)
                "gpu_clean": "flagged" in gpu and not gpu["flagged"], "gpu_flagged": len(gpu.get("flagged", [])),
                "gpu_dynamic": {k: v for k, v in gpu.get("dynamic", {}).items() if k in ("ran", "ok", "error",
                                                                                         "reason")},
                "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        a, b = (out["lowerings"][k] for k in ORDER)
        out["ratio_general_over_fused"] = {
            "convert_median": round(b["convert_median_s"] / a["convert_median_s"], 4),
            "latency_median": round(b["latency_ms"]["median_ms"] / a["latency_ms"]["median_ms"], 4)}
        out["parity"] = parity
    return out


def _latency(spec, paths: dict[str, Path], runs: int, warmup: int, threads: int) -> dict[str, dict]:
    """Both artifacts loaded at once and run alternately on the sample face: run i of one, then run
    i of the other (warm-up the same way), timed by the runner around the interpreter call only."""
    from runtime.runners import get_runner

    feed = face_feed(spec)
    runners = {k: get_runner("tflite")(spec, paths[k], input_layout="NHWC", threads=threads) for k in ORDER}
    times: dict[str, list[float]] = {k: [] for k in ORDER}
    opened = []
    try:
        for k in ORDER:
            opened.append(runners[k].__enter__())
        for i in range(warmup + runs):
            for k, r in zip(ORDER, opened):
                r.infer(feed)
                if i >= warmup:
                    times[k].append(r.last_inference_ms)
    finally:
        for r in reversed(opened):
            r.__exit__(None, None, None)
    return {k: {kk: round(v, 4) for kk, v in summarize(times[k]).to_json().items()} for k in ORDER}


def _parity(spec, paths: dict[str, Path]) -> dict:
    """Max |general − fused| per output on the sample face and a seeded input, against the model's
    fp32 TFLite tolerance (atol + rtol·max|fused|, or max_px for landmark outputs)."""
    from converters import gate
    from runtime.runners import get_runner

    (inp,) = spec.inputs
    feeds = {"sample_face": face_feed(spec)[inp.name], "seeded": gate.seeded_input(spec, seed=3)}
    outs: dict[str, dict[str, np.ndarray]] = {}
    for k in ORDER:
        with get_runner("tflite")(spec, paths[k], input_layout="NHWC") as r:
            outs[k] = {name: r.infer({inp.name: x}) for name, x in feeds.items()}
    per_output, passed = {}, True
    for o in spec.outputs:
        worst, bound = 0.0, None
        for name in feeds:
            ref = np.asarray(outs["fused"][name][o.name], np.float64)
            got = np.asarray(outs["general"][name][o.name], np.float64)
            if ref.shape != got.shape:
                raise BenchError(f"{o.name}: the two artifacts' shapes differ ({ref.shape} vs {got.shape})")
            worst = max(worst, float(np.abs(got - ref).max()) if ref.size else 0.0)
            tol = spec.tolerance("tflite", "fp32", o.name)
            if tol.atol is not None or tol.rtol is not None:
                b = (tol.atol or 0.0) + (tol.rtol or 0.0) * float(np.abs(ref).max())
            else:
                b = tol.max_px
            if b is not None:
                bound = b if bound is None else min(bound, b)
        ok = bound is None or worst <= bound
        passed = passed and ok
        per_output[o.name] = {"max_abs": worst, "bound": bound, "passed": ok}
    return {"reference": "fused", "candidate": "general", "inputs": list(feeds), "outputs": per_output,
            "passed": passed}
