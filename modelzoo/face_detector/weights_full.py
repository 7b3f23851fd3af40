"""Import MediaPipe's face_detection_full_range_sparse.tflite (densified) into
`BlazeFaceFullRange` by walking its graph from the input: every op the model has is matched by
kind, stride, padding (an explicit symmetric one-pixel PAD before each 3×3), fused activation
and weight shape; residual ADDs must add the block input, top-down ADDs the lateral; the heads'
DEPTH_TO_SPACE → RESHAPE must end in the outputs. No weight op of the file may be left over."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import WeightImportError
from ..fetch import fetch
from ..importer import WEIGHT_OPS, StateDictBuilder
from ..tflite import Op, TFLiteGraph
from .anchors import NUM_COORDS, num_anchors
from .full_range import UPSCALE, BlazeFaceFullRange, Bottleneck, Head
from .sparse import densify

WEIGHTS_FILE = "face_detection_full_range_sparse.tflite"
NONE, RELU = 0, 1            # ActivationFunctionType
SAME, VALID = 0, 1           # Padding


class _Walker:
    def __init__(self, g: TFLiteGraph, model: nn.Module):
        self.g, self.src = g, g.source
        self.sd = StateDictBuilder(model, g.source)
        self.visited: set[int] = set()

    def fail(self, msg: str) -> WeightImportError:
        return WeightImportError(f"{self.src}: {msg}")

    def consumer(self, tensor: int, kind: str, what: str, weight_shape: tuple[int, ...] | None = None) -> Op:
        ops = [op for op in self.g.consumers_of(tensor, kind) if op.index not in self.visited]
        if weight_shape is not None:
            ops = [op for op in ops if tuple(self.g.tensor(op.inputs[1]).shape) == weight_shape]
        if len(ops) != 1:
            raise self.fail(f"expected one {kind} for {what} after {self.g.tensor(tensor).name!r}, found {len(ops)}")
        self.visited.add(ops[0].index)
        return ops[0]

    def conv(self, tensor: int, conv: nn.Conv2d, prefix: str, act: int) -> int:
        depthwise = conv.groups > 1
        kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        k = conv.kernel_size[0]
        if k == 3:
            pad = self.consumer(tensor, "PAD", f"{prefix} padding")
            if self.g.const(pad.inputs[1]).tolist() != [[0, 0], [1, 1], [1, 1], [0, 0]]:
                raise self.fail(f"op {pad.index} before {prefix} is not a one-pixel symmetric spatial pad")
            tensor = pad.outputs[0]
        cout = conv.out_channels
        shape = (1, k, k, cout) if depthwise else (cout, k, k, conv.in_channels)
        op = self.consumer(tensor, kind, prefix, shape)
        opts = op.options
        stride = (opts.get("strideH"), opts.get("strideW"))
        padding = opts.get("padding")
        if stride != tuple(conv.stride) or (k > 1 and padding != VALID):
            raise self.fail(f"op {op.index} ({kind}) for {prefix}: stride {stride}, padding {padding}; the model "
                            f"has stride {tuple(conv.stride)} after an explicit pad")
        if opts.get("fusedActivationFunction", 0) != act:
            raise self.fail(f"op {op.index} for {prefix}: fused activation {opts.get('fusedActivationFunction')}, "
                            f"the model has {'ReLU' if act == RELU else 'none'}")
        w = self.g.const(op.inputs[1])
        w = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)   # 1HWC → C1HW, OHWI → OIHW
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            raise self.fail(f"op {op.index} ({prefix}) has no bias")
        self.sd.set(f"{prefix}.weight", w)
        self.sd.set(f"{prefix}.bias", self.g.const(op.inputs[2]))
        return op.outputs[0]

    def add(self, a: int, b: int, act: int, what: str) -> int:
        op = self.consumer(a, "ADD", what)
        if sorted(op.inputs) != sorted((a, b)):
            raise self.fail(f"op {op.index} ({what}) does not add the tensors the model adds")
        if op.options.get("fusedActivationFunction", 0) != act:
            raise self.fail(f"op {op.index} ({what}): fused activation {op.options.get('fusedActivationFunction')}")
        return op.outputs[0]

    def bottleneck(self, tensor: int, block: Bottleneck, prefix: str) -> int:
        h = self.conv(tensor, block.dw1, f"{prefix}.dw1", NONE)
        h = self.conv(h, block.pw1, f"{prefix}.pw1", RELU)
        h = self.conv(h, block.dw2, f"{prefix}.dw2", NONE)
        if block.stride != 1:
            return self.conv(h, block.pw2, f"{prefix}.pw2", RELU)
        h = self.conv(h, block.pw2, f"{prefix}.pw2", NONE)
        return self.add(h, tensor, RELU, f"{prefix} residual")

    def stage(self, tensor: int, stage: nn.Sequential, prefix: str) -> int:
        for i, block in enumerate(stage):
            tensor = self.bottleneck(tensor, block, f"{prefix}.{i}")
        return tensor

    def upsample(self, tensor: int, what: str) -> int:
        op = self.consumer(tensor, "RESIZE_BILINEAR", what)
        h, w = self.g.tensor(tensor).shape[1:3]
        if self.g.const(op.inputs[1]).tolist() != [2 * h, 2 * w] or op.options.get("alignCorners") \
                or not op.options.get("halfPixelCenters"):
            raise self.fail(f"op {op.index} ({what}) is not a ×2 bilinear resize with half-pixel centres")
        return op.outputs[0]

    def head(self, tensor: int, head: Head, prefix: str) -> int:
        h = self.conv(tensor, head.pw, f"{prefix}.pw", NONE)
        h = self.conv(h, head.dw, f"{prefix}.dw", NONE)
        d2s = self.consumer(h, "DEPTH_TO_SPACE", f"{prefix} depth-to-space")
        if d2s.options.get("blockSize") != UPSCALE:
            raise self.fail(f"op {d2s.index} ({prefix}) has block size {d2s.options.get('blockSize')}")
        return self.consumer(d2s.outputs[0], "RESHAPE", f"{prefix} output").outputs[0]


def import_full_range(graph: TFLiteGraph, model: BlazeFaceFullRange) -> dict:
    """A complete state dict for `model` from the densified full-range `graph`. Raises WeightImportError."""
    g, src = graph, graph.source
    size, n = model.anchors.input_size, num_anchors(model.anchors)
    inp = g.tensor(g.inputs[0])
    if inp.shape != (1, size, size, 3):
        raise WeightImportError(f"{src}: input {inp.name} has shape {inp.shape}, model expects (1,{size},{size},3)")
    by_shape = {g.tensor(i).shape: i for i in g.outputs}
    reg_t, cls_t = by_shape.get((1, n, NUM_COORDS)), by_shape.get((1, n, 1))
    if reg_t is None or cls_t is None or len(g.outputs) != 2:
        raise WeightImportError(f"{src}: outputs {sorted(by_shape)}; the model's anchors need (1,{n},{NUM_COORDS}) "
                                f"and (1,{n},1)")
    w = _Walker(g, model)
    h = w.conv(g.inputs[0], model.stem, "stem", RELU)
    feats = []
    for i, stage in enumerate(model.stages):
        h = w.stage(h, stage, f"stages.{i}")
        feats.append(h)
    for i, (lateral, reduce, blocks) in enumerate(zip(model.laterals, model.reduce, model.top_down)):
        lat = w.conv(feats[3 - i], lateral, f"laterals.{i}", RELU)
        up = w.upsample(w.conv(h, reduce, f"reduce.{i}", RELU), f"top-down {i}")
        h = w.stage(w.add(up, lat, NONE, f"top-down {i} sum"), blocks, f"top_down.{i}")
    if w.head(h, model.reg, "reg") != reg_t or w.head(h, model.cls, "cls") != cls_t:
        raise WeightImportError(f"{src}: the heads do not end in the regressor and score outputs")
    unused = [op for op in g.ops if op.kind in WEIGHT_OPS + ("ADD", "RESIZE_BILINEAR", "DEPTH_TO_SPACE")
              and op.index not in w.visited]
    if unused:
        raise WeightImportError(f"{src}: {len(unused)} ops not matched by the model: "
                                + ", ".join(f"{op.kind}#{op.index}" for op in unused[:5]))
    return w.sd.state_dict()


def load_from_bytes(model: BlazeFaceFullRange, buf: bytes, source: str = "<bytes>") -> None:
    """Load weights from the bytes of a face_detection_full_range(_sparse).tflite (sparse
    constants densified first); on error the model is untouched."""
    model.load_state_dict(import_full_range(TFLiteGraph(densify(buf, source), source), model), strict=True)


def load_from_file(model: BlazeFaceFullRange, path: Path | str) -> None:
    try:
        buf = Path(path).read_bytes()
    except OSError as exc:
        raise WeightImportError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    load_from_bytes(model, buf, str(path))


def load_pretrained(model: BlazeFaceFullRange, cache_dir: Path | None = None) -> None:
    load_from_file(model, fetch(WEIGHTS_FILE, cache_dir))
