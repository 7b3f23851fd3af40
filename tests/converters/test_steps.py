"""The step contract: one signature, declared targets/needs/options checked on every call, and a
build plan derived from the registered steps (no step run here: fast)."""
from __future__ import annotations

import pytest

from converters.base import Artifact, ConversionError, Step, StepInputs, get_step, list_steps, register_step
from converters.build import plan, supported_targets
from runtime.errors import RegistryError


def _fake(tmp_path, made=None):
    def run(inputs, outs, opts):
        arts = []
        for (fmt, prec), path in outs.items():
            path.write_bytes(b"x")
            arts.append(Artifact(path, *(made or (fmt, prec)), (), ()).finalize())
        return arts
    return Step("fake", makes={("fake", "fp32"): ".fake"}, run=run, needs=(("onnx", "fp32"),), options=("knob",))


def test_the_plan_is_derived_from_the_registered_steps():
    steps = plan()
    assert steps[("onnx", "fp32")].name == "torch->onnx"
    assert {t for t, s in steps.items() if s.name == "onnx->tflite"} == {("tflite", p) for p in ("fp32", "fp16", "int8")}
    assert steps[("tflite", "fp16")].needs == (("onnx", "fp32"),)
    assert {t for t, s in steps.items() if s.name == "torch->coreml"} == {("coreml", "fp32"), ("coreml", "fp16")}
    assert supported_targets()[0] == ("onnx", "fp32") and len(supported_targets()) == 6
    assert [s.name for s in list_steps()] == sorted(s.name for s in list_steps())
    with pytest.raises(RegistryError, match="unknown conversion step 'nope'; known: onnx->tflite"):
        get_step("nope")


def test_a_step_is_checked_on_every_call(tmp_path):
    step = _fake(tmp_path)
    onnx = tmp_path / "m.onnx"
    ok = StepInputs(None, None, {("onnx", "fp32"): onnx})
    (art,) = step(ok, {("fake", "fp32"): tmp_path / "m.fake"}, {"knob": 1})
    assert (art.format, art.precision, art.bytes) == ("fake", "fp32", 1)
    with pytest.raises(ConversionError, match=r"needs onnx/fp32 first"):
        step(StepInputs(None, None), {("fake", "fp32"): tmp_path / "m.fake"})
    with pytest.raises(ConversionError, match=r"does not make \[\('fake', 'fp16'\)\]"):
        step(ok, {("fake", "fp16"): tmp_path / "m.fake"})
    with pytest.raises(ConversionError, match="takes no option require_gpu"):
        step(ok, {("fake", "fp32"): tmp_path / "m.fake"}, {"require_gpu": True})
    liar = _fake(tmp_path, made=("fake", "fp16"))            # makes something else than asked
    with pytest.raises(ConversionError, match="made .* asked for"):
        liar(ok, {("fake", "fp32"): tmp_path / "m.fake"})


def test_registering_a_step_refuses_a_duplicate_name_or_target(tmp_path):
    with pytest.raises(RegistryError, match="already made by 'torch->onnx'"):
        register_step(Step("other", makes={("onnx", "fp32"): ".onnx"}, run=lambda i, o, p: []))
    with pytest.raises(RegistryError, match="already registered"):
        register_step(Step("torch->onnx", makes={("x", "fp32"): ".x"}, run=lambda i, o, p: []))
