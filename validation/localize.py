"""Localisation: when an edge fails, find the first intermediate tensor where the candidate stops
reproducing the reference, and name the node.

PyTorch → ONNX: module outputs (forward hooks, call order) against every ONNX node output.
ONNX → TFLite: ONNX node outputs (topological order) against every TFLite tensor
(`experimental_preserve_all_tensors`), NCHW↔NHWC explicit. Tensors are matched by shape and
value (a converter renames and reorders freely); the first reference tensor with no close match
among the candidate's tensors is the divergence."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from runtime.runners import get_runner

RTOL = {"fp32": 1e-3, "fp16": 2e-2, "int8": 1e-1}


def onnx_intermediates(path: Path, feed: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """(node name, op type, output) for every float node output, in topological order."""
    import onnx
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    known = {vi.name: vi for vi in model.graph.value_info}
    existing = {o.name for o in model.graph.output}
    order = []
    for n in model.graph.node:
        for o in n.output:
            vi = known.get(o)
            if vi is not None and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and o not in existing:
                model.graph.output.append(vi)
                order.append((n.name, n.op_type, o))
    with get_runner("onnxruntime")(None, model.SerializeToString()) as r:
        values = r.run_native(feed)
    return [(node, op, values[o]) for node, op, o in order if o in values]


def torch_intermediates(model: torch.nn.Module, x: np.ndarray, points: Sequence[str] = ()
                        ) -> list[tuple[str, np.ndarray]]:
    """(module path, output) of every leaf module and of every module `points` names (by class
    name or module path; a spec's `localisation_points`), in call order."""
    wanted = set(points)
    records: list[tuple[str, np.ndarray]] = []
    handles = []
    for name, mod in model.named_modules():
        if name and (not list(mod.children()) or type(mod).__name__ in wanted or name in wanted):
            handles.append(mod.register_forward_hook(
                lambda m, i, o, name=name: records.append((name, o.detach().numpy().copy()))
                if isinstance(o, torch.Tensor) else None))
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        for h in handles:
            h.remove()
    return records


def tflite_tensors(path: Path, x_nhwc: np.ndarray) -> list[tuple[str, np.ndarray]]:
    with get_runner("tflite")(None, path, preserve_all_tensors=True) as r:
        r.run_native({r.input_names[0]: x_nhwc})
        return [(name, v) for _, name, v in r.tensors() if v.dtype == np.float32 and v.size > 1]


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-4 + rtol * max(1.0, float(np.abs(a).max()))


def _index(cands: list[tuple[str, np.ndarray]]) -> dict[tuple[int, ...], list[tuple[str, np.ndarray]]]:
    by_shape: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}
    for name, v in cands:
        by_shape.setdefault(tuple(v.shape), []).append((name, v))
    return by_shape


def first_divergence(refs: list[tuple[str, np.ndarray]], cands: list[tuple[str, np.ndarray]], rtol: float,
                     to_candidate_layout: Callable[[np.ndarray], np.ndarray] = lambda v: v,
                     confirm: int = 3) -> dict | None:
    """The first reference tensor that no candidate tensor reproduces, confirmed by the next
    `confirm` comparable tensors failing too (a converter may fuse an op away — an ADD folded
    into its activation leaves no tensor to compare — which is no divergence if what follows
    matches again)."""
    by_shape = _index(cands)
    verdicts: list[tuple[str, np.ndarray, list]] = []
    for name, ref in refs:
        r = to_candidate_layout(ref)
        same = by_shape.get(tuple(r.shape), [])
        if same:  # no tensor of this shape survives conversion: not evidence either way
            verdicts.append((name, r, same))
    for i, (name, r, same) in enumerate(verdicts):
        if any(_close(r, v, rtol) for _, v in same):
            continue
        following = verdicts[i + 1:i + 1 + confirm]
        if any(any(_close(r2, v, rtol) for _, v in same2) for _, r2, same2 in following):
            continue
        best = min(same, key=lambda c: float(np.abs(r - c[1]).max()))
        return {"reference_tensor": name, "closest_candidate": best[0],
                "max_abs_to_closest": float(np.abs(r - best[1]).max())}
    return None


def _nhwc(v: np.ndarray) -> np.ndarray:
    return v.transpose(0, 2, 3, 1) if v.ndim == 4 else v


def localise_torch_onnx(model: torch.nn.Module, onnx_path: Path, x: np.ndarray, input_name: str,
                        points: Sequence[str] = ()) -> dict:
    """The first module (a leaf or one of `points`) whose output no ONNX tensor reproduces."""
    refs = torch_intermediates(model, x, points)
    nodes = onnx_intermediates(onnx_path, {input_name: x})
    found = first_divergence(refs, [(n, v) for n, _, v in nodes], RTOL["fp32"])
    if found is None:
        return {"node": None, "detail": "every module output is reproduced"}
    module = found["reference_tensor"]
    shape = next(v.shape for name, v in refs if name == module)
    # The exporter scopes nodes by module name ("/model/lips/GridSample" for samplers.lips); the
    # node responsible is the first one in that scope (not in a child scope) of the module's shape.
    scope = "/" + module.split(".")[-1] + "/"
    direct = [(n, op, v) for n, op, v in nodes if scope in n and "/" not in n.split(scope, 1)[1]
              and op != "Constant"]
    shaped = [f"{n} ({op})" for n, op, v in direct if v.shape == shape]
    in_scope = [f"{n} ({op})" for n, op, _ in direct]
    return {"module": module, "node": shaped[0] if shaped else found["closest_candidate"],
            "nodes_in_scope": shaped or in_scope[:8],
            "detail": f"output of module {module} is not reproduced by any ONNX tensor "
                      f"(closest differs by {found['max_abs_to_closest']:.3g})"}


def localise_onnx_tflite(onnx_path: Path, tflite_path: Path, x: np.ndarray, input_name: str, precision: str) -> dict:
    nodes = onnx_intermediates(onnx_path, {input_name: x})
    refs = [(f"{n} ({op})", v) for n, op, v in nodes if op in ("Conv", "PRelu", "Add", "MaxPool", "GridSample", "Mul")]
    cands = tflite_tensors(tflite_path, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    found = first_divergence(refs, cands, RTOL.get(precision, 1e-2), _nhwc)
    if found is None:
        return {"node": None, "detail": "every ONNX node output is reproduced"}
    return {"node": found["reference_tensor"], "tflite_tensor": found["closest_candidate"],
            "detail": f"first ONNX node whose output the TFLite model does not reproduce (closest TFLite tensor "
                      f"{found['closest_candidate']!r} differs by {found['max_abs_to_closest']:.3g})"}


def localise_gpu(tflite_path: Path, x: np.ndarray, enforce_f32: bool) -> dict:
    """GPU accelerator → the CPU interpreter on the same file: the first op computed differently."""
    from runtime.litert_gpu import first_gpu_divergence
    found = first_gpu_divergence(Path(tflite_path).read_bytes(), {"x": np.ascontiguousarray(x.transpose(0, 2, 3, 1))},
                                 enforce_f32=enforce_f32, rtol=RTOL["fp32" if enforce_f32 else "fp16"])
    if found is None:
        return {"node": None, "detail": "the GPU reproduces every op output of the CPU interpreter on this file "
                                        "(the difference is the arithmetic's, not one op's)"}
    return {"node": f"op #{found['op_index']} {found['op']}", "tflite_tensor": found["output_name"],
            "detail": f"first TFLite op the GPU accelerator computes differently from the CPU interpreter: "
                      f"{found['op']} {found['inputs']} -> {found['output']} (max rel {found['max_rel']:.3g})"}


def localise_failures(v, spec, say: Callable[[str], None] = lambda m: None) -> list[dict]:
    """One localisation per failing (reference, candidate) pair, on its first failing input."""
    import modelzoo

    from runtime.runners import runs_on_gpu
    out, seen = [], set()
    cases = {c.name: c for c in v.cases}
    onnx_entry = next(iter(v.record.select(["onnx"])), None)
    model = None
    for e in v.edges:
        key = (e.reference, e.candidate)
        if e.passed or key in seen:
            continue
        seen.add(key)
        x = cases[e.input_set].array
        artifact = v.root / e.candidate.split("@")[0]
        loc = {"reference": e.reference, "candidate": e.candidate, "input_set": e.input_set}
        say(f"localising {e.reference} → {e.candidate}")
        if runs_on_gpu(e.candidate.split("@")[-1]):
            loc.update(localise_gpu(artifact, x, e.compute is None))
        elif e.format == "onnx" and spec.config.get("source") == "onnx":
            loc.update({"node": None, "detail": "the model was given as ONNX: the artifact is the source graph "
                                                "itself, with its input shape fixed"})
        elif e.format == "onnx":
            model = model or modelzoo.load_model(spec.id, pretrained=modelzoo.has_pretrained(spec.id))
            loc.update(localise_torch_onnx(model, artifact, x, spec.inputs[0].name, spec.localisation_points))
        elif e.format == "tflite" and onnx_entry is not None:
            loc.update(localise_onnx_tflite(v.root / onnx_entry.path, artifact, x, spec.inputs[0].name,
                                            e.precision))
        else:
            loc.update({"node": None, "detail": f"no localiser for {e.format} artifacts yet"})
        out.append(loc)
    return out
