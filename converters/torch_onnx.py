"""torch → ONNX: TorchScript exporter (the spatial transformer stays one `GridSample`),
full checker, shape inference, spec names, optional verified simplification, parity gate."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from modelzoo.spec import ModelSpec

from . import gate
from runtime.runners import get_runner
from runtime.files import atomic_path

from .base import Artifact, ConversionError, Step, io_specs, register_step

STEP = "torch->onnx"


class _SpecOrder(torch.nn.Module):
    """Returns the model's outputs as a tuple in the spec's order (ONNX outputs are positional)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[n] for n in self.names)


def torch_to_onnx(model: torch.nn.Module, spec: ModelSpec, out_path: Path, *, opset: int | None = None,
                  simplify: bool = False) -> Artifact:
    import onnx

    opset = opset or spec.min_onnx_opset or 17
    if spec.min_onnx_opset and opset < spec.min_onnx_opset:
        raise ConversionError(STEP, f"opset {opset} < the model's lowest working opset {spec.min_onnx_opset}")
    if len(spec.inputs) != 1:
        raise ConversionError(STEP, "only single-input models are supported")
    names = [o.name for o in spec.outputs]
    feeds = gate.gate_inputs(spec)
    x = feeds["seeded"]
    refs = {k: gate.torch_reference(model, v) for k, v in feeds.items()}
    ref = refs["seeded"]
    missing = [n for n in names if n not in ref]
    extra = [n for n in ref if n not in names]
    if missing or extra:
        raise ConversionError(STEP, f"model outputs {sorted(ref)} disagree with its spec (missing {missing}, "
                                    f"undeclared {extra})")
    t0 = time.perf_counter()
    with atomic_path(out_path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(_SpecOrder(model, names).eval(), (torch.from_numpy(x),), str(tmp),
                                  input_names=[spec.inputs[0].name], output_names=names, opset_version=opset,
                                  dynamo=False, do_constant_folding=True)
            except Exception as exc:
                hint = (" (set opset = 20 in the model's spec file)" if "version 20" in str(exc) else "")
                raise ConversionError(STEP, f"export failed: {type(exc).__name__}: {exc}".splitlines()[0] + hint) from exc
        proto = onnx.load(str(tmp))
        if simplify:
            proto = _simplify(proto)
        try:
            onnx.checker.check_model(proto, full_check=True)
            proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        except Exception as exc:
            raise ConversionError(STEP, f"ONNX checker: {exc}") from exc
        ops = {n.op_type for n in proto.graph.node}
        for op in spec.config.get("onnx_required_ops", ()):
            if op not in ops:
                raise ConversionError(STEP, f"postcondition: the graph has no {op} node")
        got_names = [o.name for o in proto.graph.output]
        if got_names != names or [i.name for i in proto.graph.input] != [spec.inputs[0].name]:
            raise ConversionError(STEP, f"I/O names {got_names} do not follow the spec {names}")
        proto.producer_name = "meshport"
        onnx.save(proto, str(tmp))
        with get_runner("onnxruntime")(spec, tmp) as runner:
            gots = {k: runner.infer({spec.inputs[0].name: v}) for k, v in feeds.items()}
        parity = gate.check(STEP, spec, "onnx", "fp32", refs, gots)
    ins, outs = io_specs(spec)
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return Artifact(out_path, "onnx", "fp32", ins, outs, record={
        "step": STEP, "options": {"opset": opset, "simplify": simplify},
        "seconds": round(time.perf_counter() - t0, 3), "quick_parity": parity,
        "op_counts": dict(sorted(counts.items()))}).finalize()


def _simplify(proto):
    """onnxsim, kept only if it still computes the same thing (checked by the gate after)."""
    try:
        from onnxsim import simplify
        simplified, ok = simplify(proto)
    except Exception as exc:
        raise ConversionError(STEP, f"simplification failed: {exc}") from exc
    if not ok:
        raise ConversionError(STEP, "onnxsim could not validate the simplified model")
    return simplified


def _make_onnx(inputs, outs, opts) -> list[Artifact]:
    """The build's ONNX artifact: exported from the torch model, or, for a model given as ONNX
    (modelzoo.user), its file imported (converters.onnx_import)."""
    if getattr(inputs.model, "onnx_source", False):
        from .onnx_import import import_onnx
        return [import_onnx(inputs.model, inputs.spec, outs[("onnx", "fp32")])]
    return [torch_to_onnx(inputs.model, inputs.spec, outs[("onnx", "fp32")])]


register_step(Step(STEP, makes={("onnx", "fp32"): ".onnx"}, run=_make_onnx))
