"""ONNX in: a user's ONNX file becomes the build's ONNX artifact (what `torch->onnx` makes for a
torch model) — its one input fixed to the spec's static shape, its outputs the spec's in the
spec's order, the checker and strict shape inference passed, every tensor's shape static — and
`preflight` checks, before a build writes anything, that every requested target has a path:
GridSample/AffineGrid lowerable for TFLite, every op runnable by the torch executor for Core ML."""
from __future__ import annotations

import time
from pathlib import Path

from modelzoo.spec import ModelSpec
from runtime.files import atomic_path
from runtime.runners import get_runner

from . import gate
from .base import Artifact, ConversionError, io_specs

STEP = "onnx import"


def read_onnx(path: Path):
    """The ModelProto of `path`; ConversionError when it is not one."""
    import onnx
    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise ConversionError(STEP, f"{path} is not an ONNX model: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not proto.graph.node or not proto.opset_import:
        raise ConversionError(STEP, f"{path} is not an ONNX model (no graph nodes or opset)")
    return proto


def normalise(proto, spec: ModelSpec, where: str = "the ONNX file"):
    """A copy of `proto` with the spec's static input shape and outputs, checked and shape-inferred;
    ConversionError naming the tensor and dimension for whatever is not static."""
    import onnx

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    g = proto.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    inp = spec.inputs[0]
    if [i.name for i in inputs] != [inp.name]:
        raise ConversionError(STEP, f"{where} has inputs {[i.name for i in inputs]}; the spec declares one: {inp.name}")
    want = tuple(1 if d is None else d for d in inp.shape)
    dims = inputs[0].type.tensor_type.shape.dim
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ConversionError(STEP, f"input {inp.name} of {where} is not float32")
    if len(dims) != len(want):
        raise ConversionError(STEP, f"input {inp.name} of {where} has rank {len(dims)}; the spec's shape is {list(want)}")
    for i, (d, w) in enumerate(zip(dims, want)):
        if d.HasField("dim_value") and d.dim_value != w:
            raise ConversionError(STEP, f"input {inp.name} dimension {i} is {d.dim_value} in {where}; the spec "
                                        f"says {w}")
        d.Clear()
        d.dim_value = w
    by_name = {o.name: o for o in g.output}
    names = [o.name for o in spec.outputs]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConversionError(STEP, f"{where} has no output(s) {missing}; its outputs: {list(by_name)}")
    kept = [by_name[n] for n in names]
    del g.output[:]
    g.output.extend(kept)
    del g.value_info[:]    # inferred again from the fixed input
    try:
        onnx.checker.check_model(proto, full_check=True)
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ConversionError(STEP, f"ONNX checker: {exc}".splitlines()[0]) from None
    try:
        _require_static(proto)
    except ConversionError:
        # An export with dynamic axes computes shapes at run time (Shape → … → Reshape/Expand):
        # with the input fixed, constant folding makes them static, or the first that stays
        # dynamic is named.
        proto = _require_static(_folded(proto))
    return proto


def _folded(proto):
    from onnxsim import simplify
    try:
        folded, ok = simplify(proto)
    except Exception:
        return proto
    return folded if ok else proto


def _require_static(proto):
    """`proto` if every graph output and inferred tensor has a known, static shape."""
    producer = {out: n for n in proto.graph.node for out in n.output}
    for vi in list(proto.graph.output) + list(proto.graph.value_info):
        t = vi.type.tensor_type
        n = producer.get(vi.name)
        made = f" (output of {n.op_type} node {n.name or n.output[0]!r})" if n is not None else ""
        if not t.HasField("shape"):
            raise ConversionError(STEP, f"tensor {vi.name!r}{made} has no static shape after fixing the input; "
                                        "Meshport needs static shapes (export without dynamic axes)")
        for i, d in enumerate(t.shape.dim):
            if not d.HasField("dim_value"):
                raise ConversionError(STEP, f"tensor {vi.name!r}{made} dimension {i} is dynamic "
                                            f"({d.dim_param or 'unknown'}) after fixing the input to the spec's "
                                            "shape; Meshport needs static shapes")
    return proto


def preflight(model, spec: ModelSpec, targets) -> None:
    """Raise (ConversionError, naming the node) unless every requested target of an ONNX-sourced
    model has a conversion path: run before the build writes anything."""
    proto = normalise(read_onnx(model.path), spec, str(model.path))
    formats = {f for f, _ in targets}
    if "tflite" in formats:
        from onnxsim import simplify

        from .onnx_rewrites import gpu_rewrites
        from .lowering import lower_gridsample
        try:
            simplified, ok = simplify(proto)
        except Exception as exc:
            raise ConversionError(STEP, f"onnxsim cannot simplify the graph: {exc}".splitlines()[0]) from None
        lower_gridsample(gpu_rewrites(simplified))
    if "coreml" in formats:
        from .onnx_torch import STEP as CORE_STEP, unsupported
        missing = unsupported(proto)
        if missing:
            raise ConversionError(CORE_STEP, "no Core ML path for " + ", ".join(missing[:5])
                                  + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))


def import_onnx(model, spec: ModelSpec, out_path: Path) -> Artifact:
    """The build's ONNX artifact of an ONNX-sourced model, gated against the source on ONNX Runtime."""
    import onnx

    t0 = time.perf_counter()
    proto = normalise(read_onnx(model.path), spec, str(model.path))
    proto.producer_name = "meshport"
    feeds = gate.gate_inputs(spec)
    refs = {k: gate.torch_reference(model, v) for k, v in feeds.items()}
    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
        with get_runner("onnxruntime")(spec, tmp) as runner:
            gots = {k: runner.infer({spec.inputs[0].name: v}) for k, v in feeds.items()}
        parity = gate.check(STEP, spec, "onnx", "fp32", refs, gots)
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    ins, outs = io_specs(spec)
    return Artifact(out_path, "onnx", "fp32", ins, outs, record={
        "step": STEP, "options": {"source_sha256": spec.config.get("source_sha256"),
                                  "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))},
        "seconds": round(time.perf_counter() - t0, 3), "quick_parity": parity,
        "op_counts": dict(sorted(counts.items()))}).finalize()


def executor(model, spec: ModelSpec):
    """The torch module that computes an ONNX-sourced model (for the torch → Core ML path)."""
    from .onnx_torch import onnx_module
    return onnx_module(normalise(read_onnx(model.path), spec, str(model.path)))
