"""A reproduction outside the product: the paper's Table 1 side by side (attention mesh vs the cascade of mesh, lips and eye & iris
models), our TFLite against MediaPipe's own network, and the GridSample lowering's share.

Everything here is measured interleaved (A B A B …) in one process on the same runtime and the
same inputs: the real sample face for the full models, and the cascade's own crops of it (two eye
crops, one lips crop, made by the cascade's crop code) for its eye & iris and lips models. The
cascade's models are its built artifacts: the whole cascade as built, and its mesh, eye & iris and
lips models cut out of the same files (no separate exports).

    python -m experiments.table1 --build DIR [--runtimes tflite,onnxruntime] [--threads 1] [--runs 100]

needs `DIR/attention_mesh/` and `DIR/face_mesh_cascade/` built with onnx and tflite fp32; writes
`DIR/attention_mesh/compare.json`."""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import modelzoo
from runtime.errors import UsageError
from runtime.files import write_json_atomic
from runtime.record import BuildRecord
from runtime.runners import get_runner
from runtime.tflite import Graph
from validation.bench import tflite_profile as tp
from validation.bench.harness import BenchError, tool_versions
from validation.bench.stats import host_description, summarize

CASCADE = "face_mesh_cascade"
# The cascade's sub-models (FaceMeshCascade attributes) and the channel counts of their head
# convolutions: mesh 468·3 and the face flag, eye 71·3 and iris 5·3, lips 80·2.
PART_HEADS = {"mesh": (1404, 1), "iris": (213, 15), "lips": (160,)}
COMPARE_RUNTIMES = ("tflite", "onnxruntime")
MEDIAPIPE_MODEL = "face_landmark_with_attention.tflite"
MP_BACKBONE_OUT = ("output_mesh_identity", "conv_faceflag")
MP_HEAD_IN = ("transform_tensor_bilinear_v2", "transform_tensor_bilinear_v2_1", "transform_tensor_bilinear_v2_2")
MP_HEAD_OUT = ("conv_lips", "conv_left_eye", "conv_left_iris", "conv_right_eye", "conv_right_iris")


# -- sessions: one call = set inputs, run, read outputs (the same for every model compared) ---------

def session(model: Path | bytes, runtime: str, threads: int = 1):
    """A loaded runner (no spec: the model's own I/O) on one of the runtimes compared."""
    if runtime not in COMPARE_RUNTIMES + ("tflite-ref",):
        raise UsageError(f"Table 1 runs on {', '.join(COMPARE_RUNTIMES)} or tflite-ref, not {runtime!r}")
    return get_runner(runtime)(None, model if isinstance(model, bytes) else Path(model), threads=threads).load()


def prepare(runner, xs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """NCHW float32 feeds in the runtime's own layout (NHWC where a TFLite input wants it), by
    input name, made outside the timed call."""
    if runner.format == "onnx":
        return {n: np.ascontiguousarray(x, np.float32) for n, x in zip(runner.input_names, xs)}
    feed = {}
    for (name, (shape, _)), x in zip(runner.input_details().items(), xs):
        x = np.asarray(x, np.float32)
        if x.ndim == 4 and shape != x.shape:
            x = x.transpose(0, 2, 3, 1)
        feed[name] = np.ascontiguousarray(x).reshape(shape)
    return feed


def interleave(calls: dict[str, Callable[[], object]], runs: int, warmup: int,
               progress: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Time each call once per round, round after round (A B C A B C …); ms per call."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    for r in range(warmup + runs):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            dt = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                times[name].append(dt)
        if progress:
            progress(1)
    return times


# -- the cascade's sub-models, cut out of its built artifacts ------------------------------------

def built_fp32(build_dir: Path | str, model_id: str, fmts: Sequence[str]) -> dict[str, Path]:
    """The fp32 artifacts of `model_id`'s build under `build_dir` (format → file); BenchError
    naming the build command when one of `fmts` is missing."""
    record = BuildRecord.load(build_dir, modelzoo.get_spec(model_id))
    arts = {a.format: record.file(a) for a in record.select(["onnx", "tflite"], ["fp32"])}
    missing = [f for f in fmts if f not in arts]
    if missing:
        raise BenchError(f"the {model_id} build under {build_dir} lacks {missing} fp32; run "
                         f"`meshport build {model_id} --out {build_dir} --formats onnx,tflite --precisions fp32`")
    return arts


def cascade_parts(artifacts: dict[str, Path]) -> dict[str, dict[str, bytes]]:
    """The cascade's mesh, eye & iris and lips models cut out of its built fp32 artifacts
    (format → file): part → format → model, each from its input (the image, the eye crops as one
    batch of two, the lips crop) to its head outputs."""
    out: dict[str, dict[str, bytes]] = {part: {} for part in PART_HEADS}
    if "onnx" in artifacts:
        for part, buf in onnx_parts(Path(artifacts["onnx"]).read_bytes()).items():
            out[part]["onnx"] = buf
    if "tflite" in artifacts:
        for part, buf in tflite_parts(Path(artifacts["tflite"]).read_bytes()).items():
            out[part]["tflite"] = buf
    return out


def onnx_parts(buf: bytes) -> dict[str, bytes]:
    """The sub-models of the cascade's ONNX file, each the nodes the exporter named after it
    (`/model/<part>/…`), between the runtime tensors entering and leaving them."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load_from_string(buf)
    g = model.graph
    static = {t.name for t in g.initializer}
    for n in g.node:                      # weights and constants (Constant, Identity of a weight, …)
        if all(not i or i in static for i in n.input):
            static.update(n.output)
    outputs = {o.name for o in g.output}
    parts = {}
    for part in PART_HEADS:
        prefix = f"/model/{part}/"
        nodes = [n for n in g.node if n.name.startswith(prefix)]
        made = {o for n in nodes for o in n.output}
        ins = sorted({i for n in nodes for i in n.input if i and i not in made and i not in static})
        used = {i for n in g.node if not n.name.startswith(prefix) for i in n.input} | outputs
        outs = [o for n in nodes for o in n.output if o in used]
        if not nodes or not ins or not outs:
            raise BenchError(f"the cascade's ONNX file has no {prefix}… sub-model to cut")
        parts[part] = Extractor(model).extract_model(ins, outs).SerializeToString()
    return parts


def tflite_parts(buf: bytes) -> dict[str, bytes]:
    """The sub-models of the cascade's TFLite file, found by structure (onnx2tf keeps no module
    names): each part's head convolutions by their channel counts, its input the tensor before its
    stem (the first convolution on 3 channels it needs; its SAME padding included)."""
    g = Graph.from_bytes(buf)
    convs = [op for op in g.ops if op.kind == "CONV_2D"]
    parts = {}
    for part, channels in PART_HEADS.items():
        heads = []
        for c in channels:
            found = [op.outputs[0] for op in convs if g.tensor(op.outputs[0]).shape[-1] == c]
            if len(found) != 1:
                raise BenchError(f"cannot find the {part} head with {c} channels in the cascade's TFLite "
                                 f"file ({len(found)} CONV_2D found)")
            heads.append(found[0])
        upstream = [g.ops[i] for i in tp.needed_ops(g, heads, list(g.inputs))]
        stems = [op for op in upstream if op.kind == "CONV_2D" and g.tensor(op.inputs[1]).shape[-1] == 3]
        if not stems:
            raise BenchError(f"the {part} heads of the cascade's TFLite file have no 3-channel stem")
        start = stems[-1].inputs[0]                       # the last one: the part's own stem
        pad = g.made_by(start, "PAD")
        if pad is not None:
            start = pad.inputs[0]
        parts[part] = tp.cut_model(buf, [start], heads)
    return parts


def cascade_inputs(size: int = 192) -> dict[str, list[np.ndarray]]:
    """The sample face and the cascade's own crops of it: both eyes as the iris model's batch
    (left, mirrored right) and the lips."""
    import torch
    from modelzoo.data import sample_face
    from modelzoo.layers import sample_crop

    model = modelzoo.load_model("face_mesh_cascade", pretrained=modelzoo.has_pretrained("face_mesh_cascade"))
    x = torch.from_numpy(sample_face(size))
    with torch.no_grad():
        mesh, _ = model.mesh(x)
        eyes, _ = model.eye_crops(x, mesh)
        c = model.cfg.lips_crop
        lips = sample_crop(x, model.lips_matrix(mesh), (c, c))
    return {"image": [x.numpy()], "eyes": [eyes.numpy()], "lips": [lips.numpy()]}


# -- Table 1 --------------------------------------------------------------------------------------

@dataclass
class Table1:
    runtime: str
    threads: int
    runs: int
    warmup: int
    device: str
    rows: dict[str, dict[str, float]]            # name → median/p90/min (ms)
    ratio: float                                   # cascade sum median / attention mesh median
    notes: list[str] = field(default_factory=list)
    built_ratio: float | None = None               # built cascade median / attention mesh median

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "threads": self.threads, "runs": self.runs, "warmup": self.warmup,
                "device": self.device, "rows": self.rows, "ratio": round(self.ratio, 4),
                "built_ratio": None if self.built_ratio is None else round(self.built_ratio, 4), "notes": self.notes}

    def format(self) -> str:
        t = f"Table 1 — {self.runtime}, {self.threads} thread(s), {self.runs} interleaved runs, {self.device}"
        lines = [t, f"{'model':<30} {'median ms':>10} {'p90 ms':>9} {'min ms':>9}"]
        for name, r in self.rows.items():
            lines.append(f"{name:<30} {r['median_ms']:>10.3f} {r['p90_ms']:>9.3f} {r['min_ms']:>9.3f}")
        lines.append(f"{'cascade / attention mesh':<30} {self.ratio:>10.2f}×")
        if self.built_ratio is not None:
            lines.append(f"{'built cascade / attention mesh':<30} {self.built_ratio:>10.2f}×")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _row(times: Sequence[float]) -> dict[str, float]:
    s = summarize(times)
    return {"median_ms": round(s.median_ms, 4), "p90_ms": round(s.p90_ms, 4), "min_ms": round(s.min_ms, 4)}


def table1(attention_artifacts: dict[str, Path], cascade_artifacts: dict[str, Path],
           parts: dict[str, dict[str, bytes]], runtime: str, threads: int = 1, runs: int = 100, warmup: int = 10,
           progress: Callable[[int], None] | None = None) -> Table1:
    """Attention mesh vs the cascade, interleaved on one runtime: the cascade's mesh, lips and eye &
    iris models (cut out of its build; the eye & iris model runs both eyes as one batch of two, as
    the built cascade does) and the built cascade as one model (its crops included)."""
    fmt = "onnx" if runtime == "onnxruntime" else "tflite"
    for what, arts in (("attention mesh", attention_artifacts), ("cascade", cascade_artifacts)):
        if fmt not in arts:
            raise BenchError(f"the {what} build has no {fmt} fp32 artifact for {runtime}")
    inputs = cascade_inputs()
    att = session(attention_artifacts[fmt], runtime, threads)
    full = session(cascade_artifacts[fmt], runtime, threads)
    mesh, iris, lips = (session(parts[p][fmt], runtime, threads) for p in ("mesh", "iris", "lips"))
    feeds = {"attention": prepare(att, inputs["image"]), "full": prepare(full, inputs["image"]),
             "mesh": prepare(mesh, inputs["image"]), "eyes": prepare(iris, inputs["eyes"]),
             "lips": prepare(lips, inputs["lips"])}
    calls = {"attention mesh": lambda: att.run_native(feeds["attention"]),
             "cascade (built)": lambda: full.run_native(feeds["full"]),
             "mesh": lambda: mesh.run_native(feeds["mesh"]),
             "eye & iris (both eyes)": lambda: iris.run_native(feeds["eyes"]),
             "lips": lambda: lips.run_native(feeds["lips"])}
    try:
        t = interleave(calls, runs, warmup, progress)
    finally:
        for r in (att, full, mesh, iris, lips):
            r.close()
    cascade = [m + e + l for m, e, l in zip(t["mesh"], t["eye & iris (both eyes)"], t["lips"])]
    rows = {"mesh": _row(t["mesh"]), "lips": _row(t["lips"]), "eye & iris (both eyes)": _row(t["eye & iris (both eyes)"]),
            "cascade (sum)": _row(cascade), "cascade (built, with crops)": _row(t["cascade (built)"]),
            "attention mesh": _row(t["attention mesh"])}
    ratio = rows["cascade (sum)"]["median_ms"] / rows["attention mesh"]["median_ms"]
    built_ratio = rows["cascade (built, with crops)"]["median_ms"] / rows["attention mesh"]["median_ms"]
    notes = [f"mesh, lips and eye & iris are cut out of the {CASCADE} build's fp32 {fmt} artifact (not separate "
             "exports); eye & iris runs both eyes as one batch of two, as in the built cascade",
             "cascade sum = mesh + lips + eye & iris per round; crops not timed. The built cascade row is the whole "
             "artifact (crop matrices, sampling and assembly included)",
             "lips model has seeded random weights (MediaPipe ships none); its cost does not depend on them"]
    return Table1(runtime, threads, runs, warmup, host_description(), rows, ratio, notes, built_ratio)


# -- ours vs MediaPipe's network ------------------------------------------------------------------

def mediapipe_cuts(cache_dir: Path | None = None) -> dict[str, bytes]:
    """Custom-op-free cuts of MediaPipe's face_landmark_with_attention.tflite: the backbone (input →
    mesh, face-flag logit) and the region heads (the three 16×16 crops → region outputs). Only
    the crop-matrix, sampling and point-transform custom ops are left out."""
    from modelzoo.fetch import fetch
    buf = Path(fetch(MEDIAPIPE_MODEL, cache_dir=cache_dir)).read_bytes()
    return {"backbone": tp.cut_model(buf, ["input_1"], list(MP_BACKBONE_OUT)),
            "heads": tp.cut_model(buf, list(MP_HEAD_IN), list(MP_HEAD_OUT))}


def our_backbone_cut(buf: bytes) -> bytes:
    """Our attention mesh TFLite cut like MediaPipe's backbone: input → raw mesh head output and
    face flag (the tensors the crop matrices are computed from)."""
    g = Graph.from_bytes(buf)
    mesh = [op.outputs[0] for op in g.ops
            if op.kind == "CONV_2D" and int(np.prod(g.tensor(op.outputs[0]).shape)) == 1404]
    if len(mesh) != 1:
        raise BenchError(f"cannot find the mesh head (a CONV_2D with 1404 outputs) in the model: {len(mesh)} found")
    return tp.cut_model(buf, [g.inputs[0]], [mesh[0], "face_flag"])


@dataclass
class MediaPipeComparison:
    threads: int
    runs: int
    rows: dict[str, dict[str, float]]
    ratio: float              # ours full / MediaPipe network (backbone + heads)
    backbone_ratio: float     # our backbone cut / MediaPipe backbone cut
    op_counts: dict[str, dict[str, int]]
    # Per-round ratios (each round times both back to back, so slow drifts of the host cancel):
    # median and 10th/90th percentiles. None when not measured (older records).
    round_ratio: dict[str, float] | None = None

    def to_json(self) -> dict:
        return {"threads": self.threads, "runs": self.runs, "rows": self.rows, "ratio": round(self.ratio, 4),
                "backbone_ratio": round(self.backbone_ratio, 4), "op_counts": self.op_counts,
                "round_ratio": self.round_ratio}

    def format(self) -> str:
        lines = [f"Ours vs MediaPipe's network — TFLite XNNPACK, {self.threads} thread(s), {self.runs} interleaved runs",
                 f"{'model':<44} {'median ms':>10} {'p90 ms':>9} {'min ms':>9}"]
        for name, r in self.rows.items():
            lines.append(f"{name:<44} {r['median_ms']:>10.3f} {r['p90_ms']:>9.3f} {r['min_ms']:>9.3f}")
        lines.append(f"{'ours (full) / MediaPipe (backbone + heads)':<44} {self.ratio:>10.2f}×")
        if self.round_ratio:
            rr = self.round_ratio
            lines.append(f"{'  same, median of per-round ratios':<44} {rr['median']:>10.3f}×  "
                         f"(p10 {rr['p10']:.3f}, p90 {rr['p90']:.3f})")
        lines.append(f"{'our backbone / MediaPipe backbone':<44} {self.backbone_ratio:>10.2f}×")
        for k, c in self.op_counts.items():
            lines.append(f"  ops in {k}: " + ", ".join(f"{n} {v}" for n, v in sorted(c.items(), key=lambda x: -x[1])[:8]))
        return "\n".join(lines)


def compare_mediapipe(our_tflite: Path, threads: int = 1, runs: int = 100, warmup: int = 10,
                      cache_dir: Path | None = None, progress: Callable[[int], None] | None = None
                      ) -> MediaPipeComparison:
    from modelzoo.data import sample_face
    ours = Path(our_tflite).read_bytes()
    cuts = mediapipe_cuts(cache_dir)
    ours_bb = our_backbone_cut(ours)
    x = sample_face(192)
    rng = np.random.default_rng(0)
    s_ours, s_bb = session(ours, "tflite", threads), session(ours_bb, "tflite", threads)
    s_mpb, s_mph = session(cuts["backbone"], "tflite", threads), session(cuts["heads"], "tflite", threads)
    f_ours, f_bb, f_mpb = prepare(s_ours, [x]), prepare(s_bb, [x]), prepare(s_mpb, [x])
    # Head inputs: crops are data for convolutions only (fp32 cost does not depend on values).
    f_mph = {n: rng.uniform(0, 1, shape).astype(np.float32) for n, (shape, _) in s_mph.input_details().items()}
    try:
        t = interleave({"ours": lambda: s_ours.run_native(f_ours), "ours_bb": lambda: s_bb.run_native(f_bb),
                        "mp_bb": lambda: s_mpb.run_native(f_mpb), "mp_heads": lambda: s_mph.run_native(f_mph)},
                       runs, warmup, progress)
    finally:
        for r in (s_ours, s_bb, s_mpb, s_mph):
            r.close()
    mp = [a + b for a, b in zip(t["mp_bb"], t["mp_heads"])]
    per_round = np.array(t["ours"]) / np.array(mp)
    round_ratio = {"median": round(float(np.median(per_round)), 4), "p10": round(float(np.percentile(per_round, 10)), 4),
                   "p90": round(float(np.percentile(per_round, 90)), 4)}
    rows = {"ours: attention_mesh-fp32.tflite (full)": _row(t["ours"]),
            "MediaPipe network (backbone + heads)": _row(mp),
            "ours: backbone cut": _row(t["ours_bb"]),
            "MediaPipe: backbone cut": _row(t["mp_bb"]),
            "MediaPipe: region heads cut": _row(t["mp_heads"])}
    counts = {"ours": dict(tp.histogram(ours)), "MediaPipe backbone+heads": dict(
        tp.histogram(cuts["backbone"]) + tp.histogram(cuts["heads"]))}
    return MediaPipeComparison(threads, runs, rows,
                               rows["ours: attention_mesh-fp32.tflite (full)"]["median_ms"]
                               / rows["MediaPipe network (backbone + heads)"]["median_ms"],
                               rows["ours: backbone cut"]["median_ms"] / rows["MediaPipe: backbone cut"]["median_ms"],
                               counts, round_ratio)


# -- the GridSample lowering's share, op by op ----------------------------------------------------

@dataclass
class LoweringCost:
    full_ms: float
    op_sum_ms: float
    overhead_ms: float
    groups: dict[str, dict]       # name → {ops, ms, share, share_corrected}
    sampler_cut_ms: float         # the sampler region cut out and timed as one model
    top_kinds: list[tuple[str, int, float]]

    def to_json(self) -> dict:
        return {"full_ms": round(self.full_ms, 4), "op_sum_ms": round(self.op_sum_ms, 4),
                "overhead_ms": round(self.overhead_ms, 5), "groups": self.groups,
                "sampler_cut_ms": round(self.sampler_cut_ms, 4),
                "sampler_cut_share": round(self.sampler_cut_ms / self.full_ms, 4),
                "top_kinds": [[k, n, round(ms, 4)] for k, n, ms in self.top_kinds]}

    def format(self) -> str:
        lines = [f"GridSample lowering cost (TFLite XNNPACK, op by op): full model {self.full_ms:.3f} ms, "
                 f"sum of ops timed alone {self.op_sum_ms:.3f} ms (per-invoke overhead {self.overhead_ms * 1e3:.1f} µs)",
                 f"{'group':<40} {'ops':>5} {'ms':>8} {'share':>7} {'share−overhead':>15}"]
        for name, g in self.groups.items():
            lines.append(f"{name:<40} {g['ops']:>5} {g['ms']:>8.3f} {g['share'] * 100:>6.2f}% "
                         f"{g['share_corrected'] * 100:>14.2f}%")
        lines.append(f"sampler region cut out and timed as one model: {self.sampler_cut_ms:.3f} ms "
                     f"({self.sampler_cut_ms / self.full_ms * 100:.2f}% of the full model)")
        lines.append("top op kinds: " + ", ".join(f"{k}×{n} {ms:.3f} ms" for k, n, ms in self.top_kinds[:10]))
        return "\n".join(lines)


def _closure(g: Graph, start: set[int], forward: bool, stop: Callable[[int], bool] = lambda i: False,
             expand: Callable[[int], bool] = lambda i: True) -> set[int]:
    producer = {t: op.index for t, ops in g.producers().items() for op in ops}
    consumers = {t: [op.index for op in ops] for t, ops in g.consumers().items()}
    seen, todo = set(), list(start)
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        if not expand(i):
            continue
        op = g.ops[i]
        nxt = ([c for t in op.outputs for c in consumers.get(t, [])] if forward
               else [producer[t] for t in op.inputs if t in producer])
        todo.extend(j for j in nxt if not stop(j))
    return seen


def sampler_groups(buf: bytes) -> dict[str, set[int]]:
    """Partition our model's ops: 'crop matrices' (landmarks → 2×3 matrices), 'sampling' (grid +
    the lowered GridSample: index math, runtime-index GATHERs, weights, mask), 'network' (the rest:
    backbone, heads, point transforms, assembly). The sampler gathers are the GATHERs with runtime
    indices (subset/assembly gathers have constant indices); the lowering works on rank ≤ 2
    tensors, so the region ends at the op that makes the rank-4 crop; the matrix stage is what
    feeds the concatenation of the six matrix-entry blocks."""
    g = Graph.from_bytes(buf)
    kind = lambda i: g.ops[i].kind  # noqa: E731
    gathers = {op.index for op in g.ops if op.kind == "GATHER" and not g.tensor(op.inputs[1]).const}
    if not gathers:
        raise BenchError("no runtime-index GATHERs: this model has no lowered sampler")
    low_rank = lambda i: all(g.tensor(t).rank < 4 for t in g.ops[i].outputs)  # noqa: E731
    mesh_ops = [op.index for op in g.ops
                if op.kind == "CONV_2D" and int(np.prod(g.tensor(op.outputs[0]).shape)) == 1404]
    backbone = _closure(g, set(mesh_ops), forward=False)
    flag = [op.index for op in g.ops if g.tensor(op.outputs[0]).name == "face_flag"]
    backbone |= _closure(g, set(flag), forward=False)
    # Past the rank-4 crops only their reshapes/transposes, the split of jointly sampled crops into
    # one per region and an in-bounds mask (MUL) left after the sampler belong to sampling.
    moves = ("RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "SPLIT")
    down = _closure(g, gathers, forward=True, expand=lambda i: low_rank(i) or kind(i) in moves)
    crops = {i for i in down if not low_rank(i) and kind(i) in moves + ("MUL",)}
    if not crops:
        raise BenchError("the sampler gathers lead to no rank-4 crop tensor")
    region = _closure(g, crops, forward=False) - backbone
    # The matrices leave as one concatenation of six equal (1, R) blocks [a00|a01|tx|a10|a11|ty].
    def six_blocks(i: int) -> bool:
        ins = [g.tensor(t).shape for t in g.ops[i].inputs]
        return kind(i) == "CONCATENATION" and len(ins) == 6 and len(set(ins)) == 1 and int(np.prod(ins[0])) <= 16
    mats = {i for i in region if six_blocks(i)}
    matrix = _closure(g, mats, forward=False) & region
    sampling = region - matrix
    network = set(range(len(g.ops))) - region
    return {"crop matrices (Landmarks2TransformMatrix)": matrix,
            "sampling: grid + lowered GridSample": sampling, "network (backbone, heads, rest)": network}


def lowering_cost(our_tflite: Path, threads: int = 1, runs: int = 30, warmup: int = 5,
                  full_runs: int = 200) -> LoweringCost:
    from modelzoo.data import sample_face
    buf = Path(our_tflite).read_bytes()
    x = sample_face(192).transpose(0, 2, 3, 1).copy()
    groups = sampler_groups(buf)
    prof = tp.op_profile(buf, [x], threads=threads, runs=runs, warmup=warmup)
    with tp.open_model(buf, threads) as r:
        full = float(np.median(tp.time_model(r, [x], full_runs, warmup)))
    out = {}
    for name, idx in groups.items():
        out[name] = {"ops": len(idx), "ms": round(sum(o.median_ms for o in prof.ops if o.index in idx), 4),
                     "share": round(prof.share(idx), 4), "share_corrected": round(prof.share(idx, corrected=True), 4),
                     "kinds": {k: n for k, n, _ in prof.by_kind(idx)}}
    # Cross-check: the sampling region as one model between its boundary tensors.
    g = Graph.from_bytes(buf)
    sampling = groups["sampling: grid + lowered GridSample"] | groups["crop matrices (Landmarks2TransformMatrix)"]
    produced = {t for i in sampling for t in g.ops[i].outputs}
    ins = sorted({t for i in sampling for t in g.ops[i].inputs
                  if t >= 0 and t not in produced and not g.tensor(t).const})
    used_outside = {t for op in g.ops if op.index not in sampling for t in op.inputs}
    outs = sorted(t for t in produced if t in used_outside or t in g.outputs)
    cut = tp.cut_model(buf, ins, outs)
    values = tp.all_tensors(buf, [x])
    with tp.open_model(cut, threads) as r:
        cut_ms = float(np.median(tp.time_model(r, [values[t] for t in ins], full_runs, warmup)))
    return LoweringCost(full, prof.total_ms, prof.overhead_ms, out, cut_ms, prof.by_kind())


# -- everything for `meshport bench --compare` ------------------------------------------------------

def run_compare(models: Sequence[str], build_dir: Path | str, runtimes: Sequence[str] = COMPARE_RUNTIMES,
                threads: int = 1, runs: int = 100, warmup: int = 10, mediapipe: bool = True,
                lowering: bool = True, cache_dir: Path | None = None,
                progress: Callable[[str], None] | None = None, tick: Callable[[int], None] | None = None) -> dict:
    """Table 1 per runtime, ours vs MediaPipe, and the lowering's share; written to
    <build>/<attention model>/compare.json and returned."""
    if list(models) != ["attention_mesh", "face_mesh_cascade"]:
        raise UsageError("Table 1 compares exactly: attention_mesh face_mesh_cascade")
    say = progress or (lambda m: None)
    root = BuildRecord.load(build_dir, modelzoo.get_spec("attention_mesh")).root
    fmts = sorted({"onnx" if r == "onnxruntime" else "tflite" for r in runtimes})
    arts = built_fp32(build_dir, "attention_mesh", fmts)
    cascade = built_fp32(build_dir, CASCADE, fmts)
    say(f"cutting the {CASCADE} build into its mesh, eye & iris and lips models")
    parts = cascade_parts({f: cascade[f] for f in fmts})
    out: dict = {"tool_versions": tool_versions(), "device": host_description(), "table1": []}
    for rt in runtimes:
        say(f"Table 1 on {rt}")
        out["table1"].append(table1(arts, cascade, parts, rt, threads, runs, warmup, tick).to_json())
    if mediapipe and "tflite" in arts:
        say("ours vs MediaPipe's network")
        out["mediapipe"] = compare_mediapipe(arts["tflite"], threads, runs, warmup, cache_dir, tick).to_json()
    if lowering and "tflite" in arts:
        say("GridSample lowering, op by op (~1–2 min)")
        out["lowering"] = lowering_cost(arts["tflite"], threads).to_json()
    path = root / "compare.json"
    write_json_atomic(path, out)
    out["path"] = str(path)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import json
    import sys

    from runtime.errors import MeshportError
    p = argparse.ArgumentParser(prog="python -m experiments.table1", description=__doc__.splitlines()[0])
    p.add_argument("--build", default="build", help="the build directory holding attention_mesh/ (default: build)")
    p.add_argument("--runtimes", default=",".join(COMPARE_RUNTIMES), help="comma-separated (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=100, help="interleaved timed rounds (default: 100)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-mediapipe", action="store_true", help="skip ours vs MediaPipe's network")
    p.add_argument("--no-lowering", action="store_true", help="skip the op-by-op lowering cost")
    p.add_argument("--cache-dir", type=Path, default=None, help="weight cache directory (MediaPipe's .tflite)")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    say = (lambda m: None) if args.json else (lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    try:
        out = run_compare(["attention_mesh", "face_mesh_cascade"], args.build,
                          runtimes=[r for r in args.runtimes.split(",") if r], threads=args.threads, runs=args.runs,
                          warmup=args.warmup, mediapipe=not args.no_mediapipe, lowering=not args.no_lowering,
                          cache_dir=args.cache_dir, progress=say)
    except MeshportError as exc:
        print(f"table1: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for t in out["table1"]:
        print(Table1(**{k: t[k] for k in ("runtime", "threads", "runs", "warmup", "device", "rows", "ratio",
                                          "notes")}, built_ratio=t.get("built_ratio")).format() + "\n")
    if "mediapipe" in out:
        m = out["mediapipe"]
        print(MediaPipeComparison(m["threads"], m["runs"], m["rows"], m["ratio"], m["backbone_ratio"],
                                  m["op_counts"], m.get("round_ratio")).format() + "\n")
    if "lowering" in out:
        lw = out["lowering"]
        print(LoweringCost(lw["full_ms"], lw["op_sum_ms"], lw["overhead_ms"], lw["groups"], lw["sampler_cut_ms"],
                           [tuple(k) for k in lw["top_kinds"]]).format())
    print(f"→ {out['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
