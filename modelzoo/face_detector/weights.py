"""Import MediaPipe's face_detection_short_range.tflite into `BlazeFace` by walking its graph:
stem, 16 blocks (channel padding and max-pool skips checked), and the four heads, whose
RESHAPE → CONCATENATION into `regressors` / `classificators` must match our anchor order."""
from __future__ import annotations

from pathlib import Path

from ..errors import WeightImportError
from ..fetch import fetch
from ..importer import GraphWalker, StateDictBuilder
from ..tflite import TFLiteGraph
from .model import NUM_COORDS, TAP_16, BlazeFace

WEIGHTS_FILE = "face_detection_short_range.tflite"


def import_blazeface(graph: TFLiteGraph, model: BlazeFace) -> dict:
    """A complete state dict for `model` from `graph`. Raises WeightImportError."""
    g, src = graph, graph.source
    size = model.anchors.input_size
    inp = g.tensor(g.inputs[0])
    if inp.shape != (1, size, size, 3):
        raise WeightImportError(f"{src}: input {inp.name} has shape {inp.shape}, model expects (1,{size},{size},3)")
    outputs = {g.tensor(i).name: i for i in g.outputs}
    for name in ("regressors", "classificators"):
        if name not in outputs:
            raise WeightImportError(f"{src}: no output {name!r}; outputs are {sorted(outputs)}")
    reg_t, cls_t = outputs["regressors"], outputs["classificators"]
    n_anchors = sum((-(-size // s)) ** 2 * k for s, k in model.anchors.anchors_per_cell().items())
    if g.tensor(reg_t).shape != (1, n_anchors, NUM_COORDS) or g.tensor(cls_t).shape != (1, n_anchors, 1):
        raise WeightImportError(f"{src}: outputs {g.tensor(reg_t).shape}, {g.tensor(cls_t).shape}; the model's "
                                f"anchors need (1,{n_anchors},{NUM_COORDS}) and (1,{n_anchors},1)")

    sd = StateDictBuilder(model, src)
    w = GraphWalker(g, sd)
    t = w.relu(w.conv(g.inputs[0], model.stem, "stem", reg_t))
    f16 = t
    for i, block in enumerate(model.backbone):
        t = w.blaze_block(t, block, f"backbone.{i}", reg_t)
        if i == TAP_16:
            f16 = t
    heads = []
    for out_t, name, tensor in ((reg_t, "reg_16", f16), (reg_t, "reg_8", t), (cls_t, "cls_16", f16), (cls_t, "cls_8", t)):
        heads.append(w.conv(tensor, getattr(model, name), name, out_t, padding="VALID"))
    for out_t, pair in ((reg_t, heads[:2]), (cls_t, heads[2:])):
        concat = g.producer.get(out_t)
        if concat is None or concat.kind != "CONCATENATION":
            raise WeightImportError(f"{src}: {g.tensor(out_t).name} is not a concatenation of the heads")
        parts = []
        for part in concat.inputs:
            op = g.producer.get(part)
            parts.append(op.inputs[0] if op is not None and op.kind == "RESHAPE" else None)
        if parts != pair:
            raise WeightImportError(f"{src}: {g.tensor(out_t).name} concatenates heads in another order than the "
                                    f"anchors (16×16 map first, then 8×8)")
    w.check_all_used()
    return sd.state_dict()


def load_from_file(model: BlazeFace, path: Path | str) -> None:
    """Load weights from a face_detection_short_range.tflite; on error the model is untouched."""
    model.load_state_dict(import_blazeface(TFLiteGraph.load(path), model), strict=True)


def load_pretrained(model: BlazeFace, cache_dir: Path | None = None) -> None:
    load_from_file(model, fetch(WEIGHTS_FILE, cache_dir))
