"""The one tolerance evaluator and its three users (the converters' gate, validate's comparator,
the store's self-test): every bound applies on every input, and a shifted output fails by name."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import modelzoo
from modelzoo.spec import Tolerance
from modelzoo.tolerances import Bounds, ToleranceError, evaluate, resolve

MODEL = "attention_mesh"
# Every (format, precision) the zoo builds, and the arithmetic a runner may impose on it.
TARGETS = [(f, p, c) for f, p in modelzoo.get_spec(MODEL).targets for c in ((None, "fp16") if f == "tflite"
                                                                             else (None,))]


@pytest.fixture(scope="module")
def spec():
    return modelzoo.get_spec(MODEL)


@pytest.fixture(scope="module")
def reference(attention_mesh):
    """PyTorch's outputs on the gate's inputs: a seeded tensor (no face) and the sample face."""
    from converters import gate
    feeds = gate.gate_inputs(modelzoo.get_spec(MODEL))
    return {k: gate.torch_reference(attention_mesh, v) for k, v in feeds.items()}


def _shift(bounds: Bounds) -> float:
    """Three times the largest bound that applies everywhere: a clear, but not absurd, error."""
    return 3 * max(b for b in (bounds.atol, bounds.max_px) if b is not None)


@pytest.mark.parametrize("fmt,precision,compute", TARGETS)
def test_every_output_has_a_bound_that_applies_without_a_face(spec, fmt, precision, compute):
    for out in spec.outputs:
        b = resolve(spec, fmt, precision, out.name, compute)
        assert b.atol is not None or (b.landmark and b.max_px is not None), (fmt, precision, out.name)
        if out.name in spec.landmark_outputs and precision != "fp32":
            assert b.mean_iod_pct is not None          # faces keep their %IOD bound too


def test_an_iod_only_tolerance_is_an_error_not_a_pass(spec):
    broken = dataclasses.replace(spec, tolerances={**spec.tolerances,
                                                   ("tflite", "fp16", "*"): Tolerance(mean_iod_pct=0.05)})
    with pytest.raises(ToleranceError, match="does not apply to every input"):
        resolve(broken, "tflite", "fp16", "landmarks")
    px_only = dataclasses.replace(spec, tolerances={("tflite", "fp16", "*"): Tolerance(max_px=1.0)})
    assert resolve(px_only, "tflite", "fp16", "landmarks").max_px == 1.0
    with pytest.raises(ToleranceError, match="give it atol"):       # max px means nothing for a probability
        resolve(px_only, "tflite", "fp16", "face_flag")
    with pytest.raises(ToleranceError, match="no tolerance"):
        resolve(dataclasses.replace(spec, tolerances={}), "onnx", "fp32", "landmarks")


def test_fp16_compute_takes_the_looser_bound_of_artifact_and_arithmetic(spec):
    fp32 = resolve(spec, "tflite", "fp32", "landmarks", "fp16")
    int8 = resolve(spec, "tflite", "int8", "landmarks", "fp16")
    compute = spec.tolerance("tflite", "fp16-compute", "landmarks")
    assert (fp32.max_px, fp32.mean_iod_pct) == (compute.max_px, compute.mean_iod_pct)
    assert int8.max_px == max(compute.max_px, spec.tolerance("tflite", "int8", "landmarks").max_px)
    assert int8.mean_iod_pct == max(compute.mean_iod_pct, spec.tolerance("tflite", "int8", "landmarks").mean_iod_pct)
    with pytest.raises(ToleranceError, match="unknown compute"):
        resolve(spec, "tflite", "fp32", "landmarks", "bf16")


def test_evaluate_checks_each_bound_it_has():
    ref = np.zeros((1, 478, 3))
    lm = Bounds(atol=1.0, max_px=0.5, mean_iod_pct=0.1, landmark=True)
    assert evaluate("landmarks", lm, ref, ref + 0.05, iod=100.0).passed
    got = ref.copy()
    got[0, 5, :2] = 0.6                                   # one point 0.85 px away
    r = evaluate("landmarks", lm, ref, got, iod=100.0)
    assert r.failures == ["max 0.849 px > 0.5 px"]
    r = evaluate("landmarks", lm, ref, ref + 0.3, iod=100.0)
    assert r.failures == ["all: mean 0.424% IOD > 0.1%"]
    assert evaluate("landmarks", lm, ref, ref + 0.3, iod=None).passed          # no face: px bounds only
    assert evaluate("x", Bounds(atol=0.1), ref, ref + np.nan).failures[0] == "non-finite values"
    assert "shape" in evaluate("x", Bounds(atol=0.1), ref, ref[:, :10]).failures[0]


# -- the three users: each fails a shifted output, naming it -------------------------------------------------------

@pytest.mark.parametrize("fmt,precision,compute", TARGETS)
def test_gate_fails_a_shifted_output_and_names_it(spec, reference, fmt, precision, compute):
    from converters import gate
    from converters.base import ConversionError
    gate.check("test", spec, fmt, precision, reference, reference, compute)        # unshifted: passes
    for out in spec.outputs:
        d = _shift(resolve(spec, fmt, precision, out.name, compute))
        for feed in reference:                                                     # each input on its own
            shifted = {k: {n: v + d if (k, n) == (feed, out.name) else v for n, v in o.items()}
                       for k, o in reference.items()}
            with pytest.raises(ConversionError, match=f"{feed}/{out.name}: "):
                gate.check("test", spec, fmt, precision, reference, shifted, compute)


@pytest.mark.parametrize("fmt,precision,compute", TARGETS)
def test_comparator_fails_a_shifted_output_and_names_it(spec, reference, fmt, precision, compute):
    from validation.compare import compare
    for feed, ref in reference.items():
        assert all(r.passed for r in compare(spec, fmt, precision, ref, ref, feed != "seeded", compute))
        for out in spec.outputs:
            d = _shift(resolve(spec, fmt, precision, out.name, compute))
            results = compare(spec, fmt, precision, ref, {**ref, out.name: ref[out.name] + d}, feed != "seeded",
                              compute)
            assert {r.name for r in results if not r.passed} == {out.name}, (feed, out.name)


@pytest.mark.parametrize("fmt,precision", sorted({(f, p) for f, p, _ in TARGETS}))
def test_selftest_fails_a_shifted_output_and_names_it(spec, reference, fmt, precision):
    from artifacts.selftest import check, tolerance_rules
    golden = {k: np.asarray(v) for k, v in reference["sample_face"].items()}
    meta = {"artifact": f"{MODEL}.{fmt}", "tolerances": tolerance_rules(spec, fmt, precision, golden)}
    assert check(meta, golden, golden).passed
    for out in spec.outputs:
        d = _shift(resolve(spec, fmt, precision, out.name))
        res = check(meta, golden, {**golden, out.name: golden[out.name] + d})
        assert not res.passed and [n for n, row in res.outputs.items() if not row["passed"]] == [out.name]
