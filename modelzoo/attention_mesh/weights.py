"""Import MediaPipe's face_landmark_with_attention.tflite into `AttentionMesh`.

Weights are matched by walking the TFLite graph, not by tensor names; the attention regions
(landmark index lists, rotation landmarks, scales, crop sizes) are read from the options of
the file's custom ops, and the scale constants around them are checked against the config."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import WeightImportError
from ..fetch import fetch
from ..importer import GraphWalker, StateDictBuilder, children
from ..tflite import TFLiteGraph
from .model import AttentionMesh, RegionConfig, with_regions

WEIGHTS_FILE = "face_landmark_with_attention.tflite"


def import_attention_mesh(graph: TFLiteGraph, model: AttentionMesh) -> tuple[tuple[RegionConfig, ...], dict[str, torch.Tensor]]:
    """Read regions and a complete state dict for `model` from `graph`. Raises WeightImportError."""
    cfg = model.cfg
    g = graph
    src = g.source
    inp = g.tensor(g.inputs[0])
    if inp.shape != (1, cfg.input_size, cfg.input_size, 3):
        raise WeightImportError(f"{src}: input {inp.name} has shape {inp.shape}, "
                                f"model expects (1,{cfg.input_size},{cfg.input_size},3)")
    outputs = {g.tensor(i).name: i for i in g.outputs}
    mesh_t = _output(outputs, "output_mesh_identity", src)
    flag_t = _output(outputs, "conv_faceflag", src)

    sd = StateDictBuilder(model, src)
    w = GraphWalker(g, sd)
    t = w.conv_prelu(g.inputs[0], model.stem, "stem", mesh_t)
    feat_t = t
    for i, block in enumerate(model.backbone):
        t = w.blaze_block(t, block, f"backbone.{i}", mesh_t)
        if i == model.feature_index:
            feat_t = t
    top = w.sequence(t, children(model.neck, "neck"), mesh_t)
    mesh_conv = w.conv(top, model.mesh_head, "mesh_head", mesh_t, padding="VALID")
    if not g.reachable(mesh_conv, mesh_t):
        raise WeightImportError(f"{src}: mesh head does not produce output_mesh_identity")
    w.conv(top, model.face_flag_head, "face_flag_head", flag_t, padding="VALID")

    s = cfg.feature_scale
    regions = []
    for op in g.ops_of_type("CUSTOM:Landmarks2TransformMatrix"):
        o = op.options
        _check_const_mul(g, op.inputs[0], np.float32(s), "mesh → feature scale")
        sampler = g.only(g.consumers_of(op.outputs[0], "CUSTOM:TransformTensorBilinear"),
                         f"TransformTensorBilinear after op {op.index}")
        if sampler.inputs[0] != feat_t:
            raise WeightImportError(f"{src}: crops sample {g.tensor(sampler.inputs[0]).name!r}, the model taps "
                                    f"{g.tensor(feat_t).name!r}")
        crop = (int(o["output_height"]), int(o["output_width"]))
        if crop != (cfg.crop_size, cfg.crop_size) or \
                (sampler.options["output_height"], sampler.options["output_width"]) != crop:
            raise WeightImportError(f"{src}: crop size {crop} in op {op.index}, model expects {cfg.crop_size}")
        crop_t = sampler.outputs[0]
        reached = [(name, i) for name, i in outputs.items() if name.startswith("output_") and g.reachable(crop_t, i)]
        if not reached:
            raise WeightImportError(f"{src}: crop of op {op.index} reaches no output")
        heads = []
        for name, out_t in reached:
            n_values = g.tensor(out_t).shape[-1]
            heads.append((name[len("output_"):], n_values // 2, out_t))
        heads.sort(key=lambda h: -h[1])
        main = heads[0][0]
        if main not in model.regions:
            raise WeightImportError(f"{src}: region {main!r} in the file, model has {sorted(model.regions)}")
        head = model.regions[main]
        prefix = f"regions.{main}"
        trunk_t = w.sequence(crop_t, children(head.trunk, f"{prefix}.trunk"), heads[0][2])
        for name, _n, out_t in heads:
            if name not in head.branches:
                raise WeightImportError(f"{src}: output {name!r} has no branch in region {main}")
            *body, last = children(head.branches[name], f"{prefix}.branches.{name}")
            b = w.sequence(trunk_t, body, out_t)
            w.conv(b, last[1], last[0], out_t, padding="VALID")
            _check_landmark_transform(g, out_t, op.outputs[0], 1.0 / s)
        regions.append(RegionConfig(
            name=main, left_idx=int(o["left_rotation_idx"]), right_idx=int(o["right_rotation_idx"]),
            subset=tuple(int(i) for i in o["subset_idxs"]), outputs=tuple((n, k) for n, k, _ in heads),
            scale=(float(o["scale_x"]), float(o["scale_y"])),
            target_rotation=float(o["target_rotation_radians"])))
    w.check_all_used()
    return tuple(regions), sd.state_dict()


def _output(outputs: dict[str, int], name: str, src: str) -> int:
    if name not in outputs:
        raise WeightImportError(f"{src}: no output {name!r}; outputs are {sorted(outputs)}")
    return outputs[name]


def _check_const_mul(g: TFLiteGraph, tensor: int, want: np.ndarray, what: str) -> None:
    op = g.producer.get(tensor)
    if op is None or op.kind != "MUL":
        raise WeightImportError(f"{g.source}: expected a constant MUL for {what}")
    const = [g.tensor(i).data for i in op.inputs if g.tensor(i).data is not None]
    if len(const) != 1 or not np.allclose(const[0], want):
        raise WeightImportError(f"{g.source}: {what} constant {const} != {want}")


def _check_landmark_transform(g: TFLiteGraph, out_t: int, matrix_t: int, translation_scale: float) -> None:
    """The region output must come from TransformLandmarks on the crop matrix times MediaPipe's
    constant (rotation ×1, translation ×1/s) — what `transform_points(..., 1/s)` computes."""
    for op in g.ops_of_type("CUSTOM:TransformLandmarks"):
        if g.reachable(op.outputs[0], out_t):
            mul = g.producer.get(op.inputs[1])
            if mul is None or mul.kind != "MUL" or matrix_t not in mul.inputs:
                raise WeightImportError(f"{g.source}: TransformLandmarks op {op.index} does not use the crop matrix")
            const = [g.tensor(i).data for i in mul.inputs if g.tensor(i).data is not None][0].reshape(4, 4)
            if not (np.allclose(const[:2, :2], 1) and np.allclose(const[:2, 3], translation_scale)):
                raise WeightImportError(f"{g.source}: unexpected landmark transform scale {const[:2]}")
            return
    raise WeightImportError(f"{g.source}: no TransformLandmarks feeds {g.tensor(out_t).name!r}")


def load_from_file(model: AttentionMesh, path: Path | str) -> None:
    """Load weights and regions from a face_landmark_with_attention.tflite into `model`.
    On any error the model is left untouched."""
    graph = TFLiteGraph.load(path)
    regions, state = import_attention_mesh(graph, model)
    with_regions(model, regions)
    model.load_state_dict(state, strict=True)


def load_pretrained(model: AttentionMesh, cache_dir: Path | None = None) -> None:
    load_from_file(model, fetch(WEIGHTS_FILE, cache_dir))
