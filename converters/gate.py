"""Quick parity gate run inside each step: the new artifact on one seeded input against PyTorch,
with the spec's tolerances. (The full suite lives in validation/.)"""
from __future__ import annotations

import numpy as np
import torch

from modelzoo.data import sample_face
from modelzoo.spec import ModelSpec
from modelzoo.tolerances import ToleranceError, evaluate, resolve

from .base import ConversionError

def seeded_input(spec: ModelSpec, seed: int = 0) -> np.ndarray:
    shape = [1 if d is None else d for d in spec.inputs[0].shape]
    lo, hi = spec.inputs[0].value_range or (0.0, 1.0)
    rng = np.random.default_rng(seed)
    return (lo + (hi - lo) * rng.random(shape)).astype(np.float32)


def gate_inputs(spec: ModelSpec) -> dict[str, np.ndarray]:
    """NCHW inputs of the quick gate: a seeded random tensor, and a real face for image models
    (error bounds relative to the inter-ocular distance only mean something on a face)."""
    from modelzoo.user import samples_of

    feeds = {"seeded": seeded_input(spec)}
    samples = samples_of(spec)
    if samples:             # a user model's first own sample: real data in the quick gate too
        feeds[f"sample-{samples[0][0]}"] = samples[0][1]
    inp = spec.inputs[0]
    if inp.layout == "NCHW" and inp.channel_order == "RGB" and inp.shape[2] == inp.shape[3]:
        feeds["sample_face"] = sample_face(int(inp.shape[-1]))
    return feeds


def torch_reference(model: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}


def check(step: str, spec: ModelSpec, fmt: str, precision: str,
          refs: dict[str, dict[str, np.ndarray]], gots: dict[str, dict[str, np.ndarray]],
          compute: str | None = None) -> dict:
    """Per input and output errors; raises ConversionError naming every output over its tolerance."""
    report, failures = {}, []
    for feed, ref in refs.items():
        rows, fails = _compare(step, spec, fmt, precision, ref, gots[feed], face=feed != "seeded", compute=compute)
        report[feed] = rows
        failures += [f"{feed}/{f}" for f in fails]
    if failures:
        raise ConversionError(step, f"parity gate vs PyTorch failed ({fmt}/{precision}{f', {compute} compute' if compute else ''}): " + "; ".join(failures))
    return report


def _compare(step: str, spec: ModelSpec, fmt: str, precision: str, ref: dict[str, np.ndarray],
             got: dict[str, np.ndarray], face: bool, compute: str | None = None) -> tuple[dict, list[str]]:
    rows, failures = {}, []
    lm = spec.landmarks
    iod = lm.inter_ocular_distance(ref[lm.output][0]) if face and lm is not None and lm.output in ref else None
    for out in spec.outputs:
        if out.name not in got:
            raise ConversionError(step, f"artifact has no output {out.name!r}")
        a, b = ref[out.name], got[out.name]
        if a.shape != b.shape:
            raise ConversionError(step, f"output {out.name} has shape {b.shape}, PyTorch gives {a.shape}")
        try:
            result = evaluate(out.name, resolve(spec, fmt, precision, out.name, compute), a, b, iod)
        except ToleranceError as exc:
            raise ConversionError(step, str(exc)) from None
        row = {"max_abs": result.max_abs, "mean_abs": result.mean_abs}
        if result.landmarks:
            row.update({k: v for k, v in result.landmarks["all"].items() if v is not None})
        failures += [f"{out.name}: {f}" for f in result.failures]
        rows[out.name] = row
    return rows, failures
