"""Static check of a .tflite file against the op, version and tensor-type rules of TFLite's GPU delegate.

TF 2.19's `tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)` approves ops the delegate
rejects (GATHER_ND, TOPK_V2), so Meshport checks artifacts itself. The rules are those of the classic GPU
delegate (OpenCL/GL/Metal) as written in LiteRT `tflite/delegates/gpu/common/model_builder.cc` (the op parser
table, each parser's `IsSupported` with its max op version, and the tensor-type filter in `GetOpsToReplace`),
`tflite/tools/versioning/gpu_compatibility.cc` (per-op operand rules, standard broadcast), the parsers' own
operand requirements (what `Parse` reads as a constant), and `tflite/delegates/utils.cc`
(`FP16GraphPartitionHelper`: DEQUANTIZE of an fp16 constant is folded into its consumers). Meshport policy on
top: every CUSTOM op is flagged, including the few the delegate (or MediaPipe's build of it) can parse.

The model is read through `runtime.tflite` (the flatbuffer schema shipped with ai_edge_litert): no TensorFlow, no
interpreter.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import MeshportError
from runtime.tflite import Graph, TFLiteFormatError

from .gpu_rules import F16, MAX_VERSIONS, RULES, Flag, _check_op, _Ctx

__all__ = ["Flag", "GpuReport", "GpuCompatibilityError", "check_gpu_compatibility", "require_gpu_compatible",
           "MAX_VERSIONS", "RULES"]

class GpuCompatibilityError(MeshportError):
    """A .tflite artifact has ops the TFLite GPU delegate would leave on the CPU (or is unreadable)."""

    def __init__(self, message: str, report: "GpuReport | None" = None):
        self.report = report
        super().__init__(message)


@dataclass
class GpuReport:
    source: str
    ops: int                                   # operators in the main subgraph
    flagged: list[Flag] = field(default_factory=list)
    folded_fp16_dequantize: int = 0            # DEQUANTIZE of fp16 constants, folded by the delegate

    @property
    def ok(self) -> bool:
        return not self.flagged

    @property
    def flagged_ops(self) -> list[int]:
        return sorted({f.op_index for f in self.flagged})

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "ok": self.ok, "ops": self.ops,
                "folded_fp16_dequantize": self.folded_fp16_dequantize,
                "flagged": [asdict(f) for f in self.flagged]}

    def summary(self) -> str:
        if self.ok:
            return f"{self.source}: all {self.ops} ops are GPU-delegate compatible"
        lines = [f"{self.source}: {len(self.flagged_ops)} of {self.ops} ops would not run on the TFLite GPU "
                 f"delegate (it delegates one partition; the rest runs on the CPU):"]
        lines += [f"  {f}" for f in self.flagged]
        return "\n".join(lines)


def check_gpu_compatibility(model: str | Path | bytes | bytearray | memoryview, *,
                            allow_quant_ops: bool = True) -> GpuReport:
    """Check every op of a .tflite model (path or bytes) against the TFLite GPU delegate's rules.

    `allow_quant_ops` mirrors the delegate option TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT (on by default):
    with it, int8/uint8 tensors and QUANTIZE/DEQUANTIZE are accepted. DEQUANTIZE of fp16 constants is always
    folded into its consumers, as the delegate does.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        buf, source = bytes(model), "<bytes>"
    else:
        path = Path(model)
        try:
            buf = path.read_bytes()
        except OSError as exc:
            raise GpuCompatibilityError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        source = str(path)
    try:
        g = Graph.from_bytes(buf, source)
    except TFLiteFormatError as exc:
        raise GpuCompatibilityError(str(exc)) from exc
    folded: dict[int, int] = {}
    report = GpuReport(source=source, ops=len(g.ops))
    for op in g.ops:
        if op.kind == "DEQUANTIZE" and op.inputs and op.outputs and op.inputs[0] >= 0:
            src = g.tensors[op.inputs[0]]
            if src.type == F16 and src.const:
                folded[op.outputs[0]] = src.index
                report.folded_fp16_dequantize += 1
                continue
        c = _Ctx(g, op, folded)
        _check_op(c, allow_quant_ops)
        report.flagged += [Flag(op.index, op.kind, op.version, rule, reason) for rule, reason in c.flags]
    return report


def require_gpu_compatible(model: str | Path | bytes | bytearray | memoryview, allow: bool = False, *,
                           allow_quant_ops: bool = True) -> GpuReport:
    """The report, or GpuCompatibilityError listing every flagged op unless `allow` (the opt-out) is set."""
    report = check_gpu_compatibility(model, allow_quant_ops=allow_quant_ops)
    if not report.ok and not allow:
        raise GpuCompatibilityError(report.summary() + "\n(pass allow=True to accept CPU fallback)", report)
    return report
