"""Import MediaPipe's face_landmark.tflite (mesh model) and iris_landmark.tflite (eye & iris
model) into `FaceMeshCascade`. The lips model has no MediaPipe counterpart and keeps its seeded
random init.

Weights are matched by walking the TFLite graphs (not by tensor names): every parameter must be
assigned exactly once, every weight-bearing op used, strides and paddings as the model has them."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ..errors import WeightImportError
from ..fetch import fetch
from ..importer import GraphWalker, StateDictBuilder, children
from ..tflite import TFLiteGraph
from .model import Bottleneck, FaceMeshCascade, FaceMeshNet, IrisNet

MESH_FILE = "face_landmark.tflite"
IRIS_FILE = "iris_landmark.tflite"


class CascadeWalker(GraphWalker):
    """GraphWalker that also knows the iris model's bottleneck blocks."""

    def bottleneck(self, tensor: int, block: Bottleneck, prefix: str, target: int | None) -> int:
        # The stride-2 projection is a 2×2 VALID conv; 1×1 convs accept either padding.
        t = self.conv(tensor, block.project, f"{prefix}.project", target,
                      padding="VALID" if block.stride == 2 else "SAME")
        t = self._prelu(t, f"{prefix}.project_act")
        t = self.conv(t, block.dw, f"{prefix}.dw", None, op_type="DEPTHWISE_CONV_2D")
        t = self.conv(t, block.expand, f"{prefix}.expand", None)
        add = self.g.only(self.g.consumers_of(t, "ADD"), f"residual ADD in {prefix}")
        skip = [i for i in add.inputs if i != t]
        # _is_skip_of reads cin/cout/stride, which Bottleneck has like BlazeBlock.
        if len(skip) != 1 or not self._is_skip_of(skip[0], tensor, block):  # type: ignore[arg-type]
            raise WeightImportError(f"{self.g.source}: residual of {prefix} (op {add.index}) is not the "
                                    f"block input{' through max-pool' if block.stride == 2 else ''}")
        return self._prelu(add.outputs[0], f"{prefix}.act")

    def sequence(self, tensor: int, modules: Iterable[tuple[str, nn.Module]], target: int | None) -> int:
        for prefix, m in modules:
            if isinstance(m, Bottleneck):
                tensor = self.bottleneck(tensor, m, prefix, target)
            else:
                tensor = super().sequence(tensor, [(prefix, m)], target)
        return tensor


def _check_input(g: TFLiteGraph, shape: tuple[int, ...]) -> None:
    inp = g.tensor(g.inputs[0])
    if len(g.inputs) != 1 or inp.shape != shape:
        raise WeightImportError(f"{g.source}: input {inp.name} has shape {inp.shape}, model expects {shape}")


def _output_of_size(g: TFLiteGraph, size: int) -> int:
    found = [i for i in g.outputs if g.tensor(i).shape and g.tensor(i).shape[-1] == size]
    if len(found) != 1:
        have = [(g.tensor(i).name, g.tensor(i).shape) for i in g.outputs]
        raise WeightImportError(f"{g.source}: expected one output with {size} values, outputs are {have}")
    return found[0]


def _head(w: CascadeWalker, tensor: int, conv: nn.Conv2d, prefix: str, out_t: int) -> None:
    t = w.conv(tensor, conv, prefix, out_t, padding="VALID")
    if not w.g.reachable(t, out_t):
        raise WeightImportError(f"{w.g.source}: {prefix} does not produce {w.g.tensor(out_t).name!r}")


def import_face_mesh(graph: TFLiteGraph, net: FaceMeshNet) -> dict[str, torch.Tensor]:
    """A complete state dict for `net` from face_landmark.tflite. Raises WeightImportError."""
    g = graph
    _check_input(g, (1, 192, 192, 3))
    mesh_t = _output_of_size(g, net.num_mesh * 3)
    flag_t = _output_of_size(g, 1)
    sd = StateDictBuilder(net, g.source)
    w = CascadeWalker(g, sd)
    t = w.conv_prelu(g.inputs[0], net.stem, "stem", mesh_t)
    t = w.sequence(t, children(net.backbone, "backbone"), mesh_t)
    m = w.sequence(t, children(net.mesh_branch, "mesh_branch"), mesh_t)
    _head(w, m, net.mesh_head, "mesh_head", mesh_t)
    f = w.sequence(t, children(net.flag_branch, "flag_branch"), flag_t)
    _head(w, f, net.flag_head, "flag_head", flag_t)
    w.check_all_used()
    return sd.state_dict()


def import_iris(graph: TFLiteGraph, net: IrisNet) -> dict[str, torch.Tensor]:
    """A complete state dict for `net` from iris_landmark.tflite. Raises WeightImportError."""
    g = graph
    _check_input(g, (1, 64, 64, 3))
    outs = {name: _output_of_size(g, n * 3) for name, n in net.OUTPUTS}
    sd = StateDictBuilder(net, g.source)
    w = CascadeWalker(g, sd)
    first = outs[net.OUTPUTS[0][0]]
    t = w.conv_prelu(g.inputs[0], net.stem, "stem", first)
    t = w.sequence(t, children(net.trunk, "trunk"), first)
    for name, out_t in outs.items():
        *body, (head_prefix, head) = children(net.branches[name], f"branches.{name}")
        b = w.sequence(t, body, out_t)
        _head(w, b, head, head_prefix, out_t)
    w.check_all_used()
    return sd.state_dict()


def load_from_files(model: FaceMeshCascade, mesh_path: Path | str, iris_path: Path | str) -> None:
    """Load the mesh and iris weights into `model`. Both files are imported before anything is
    loaded, so on any error the model is left untouched."""
    mesh_state = import_face_mesh(TFLiteGraph.load(mesh_path), model.mesh)
    iris_state = import_iris(TFLiteGraph.load(iris_path), model.iris)
    model.mesh.load_state_dict(mesh_state, strict=True)
    model.iris.load_state_dict(iris_state, strict=True)


def load_pretrained(model: FaceMeshCascade, cache_dir: Path | None = None) -> None:
    load_from_files(model, fetch(MESH_FILE, cache_dir), fetch(IRIS_FILE, cache_dir))
