"""TFLite → PyTorch weight import machinery shared by the zoo models.

A `GraphWalker` follows the TFLite graph from a tensor along the path to a target tensor,
matching our modules (convolutions, PReLUs, BlazeBlocks) to ops and copying their constants
into a `StateDictBuilder`, which checks that every parameter is assigned exactly once with the
right shape and that no weight-bearing op of the file is left unused."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from .errors import WeightImportError
from .layers import BlazeBlock, ConvPReLU
from .tflite import Op, TFLiteGraph

_PADDING = {0: "SAME", 1: "VALID"}
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU")


class StateDictBuilder:
    def __init__(self, model: nn.Module, source: str):
        self.model = model
        self.source = source
        self.expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.values: dict[str, torch.Tensor] = {}

    def set(self, name: str, value: np.ndarray) -> None:
        if name not in self.expected:
            raise WeightImportError(f"{self.source}: model has no parameter {name!r}")
        if name in self.values:
            raise WeightImportError(f"{self.source}: parameter {name!r} assigned twice")
        if tuple(value.shape) != self.expected[name]:
            raise WeightImportError(f"{self.source}: {name} has shape {tuple(value.shape)} in the file, "
                                    f"model expects {self.expected[name]}")
        if not np.all(np.isfinite(value)):
            raise WeightImportError(f"{self.source}: {name} contains NaN or Inf")
        self.values[name] = torch.from_numpy(np.array(value, dtype=np.float32))

    def state_dict(self) -> dict[str, torch.Tensor]:
        missing = sorted(set(self.expected) - set(self.values))
        if missing:
            raise WeightImportError(f"{self.source}: {len(missing)} parameters not found in the file, "
                                    f"e.g. {missing[:3]}")
        return dict(self.values)


class GraphWalker:
    def __init__(self, graph: TFLiteGraph, sd: StateDictBuilder):
        self.g = graph
        self.sd = sd
        self.visited: set[int] = set()

    # -- helpers ---------------------------------------------------------------------------
    def _next(self, tensor: int, op_type: str, target: int | None) -> Op:
        cands = self.g.consumers_of(tensor, op_type)
        if target is not None and len(cands) > 1:
            cands = [op for op in cands if any(self.g.reachable(o, target) for o in op.outputs)]
        name = self.g.tensor(tensor).name
        return self.g.only(cands, f"{op_type} consuming {name!r}")

    def _check(self, op: Op, stride: int | None, padding: str, what: str) -> None:
        got_stride = op.options.get("strideH"), op.options.get("strideW")
        got_pad = _PADDING.get(op.options.get("padding"))
        if (stride is not None and got_stride != (stride, stride)) or got_pad != padding:
            raise WeightImportError(f"{self.g.source}: op {op.index} ({op.kind}) for {what} has stride "
                                    f"{got_stride}, padding {got_pad}; the model expects {stride}, {padding}")
        if op.options.get("fusedActivationFunction", 0) != 0:
            raise WeightImportError(f"{self.g.source}: op {op.index} has a fused activation the model lacks")

    def _conv_params(self, op: Op, prefix: str) -> None:
        w = self.g.const(op.inputs[1])
        if op.kind == "CONV_2D":
            w = w.transpose(0, 3, 1, 2)            # OHWI → OIHW
        else:
            w = w.transpose(3, 0, 1, 2)            # 1HWC → C1HW
        self.sd.set(f"{prefix}.weight", w)
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            raise WeightImportError(f"{self.g.source}: op {op.index} has no bias")
        self.sd.set(f"{prefix}.bias", self.g.const(op.inputs[2]))
        self.visited.add(op.index)

    def _prelu(self, tensor: int, prefix: str) -> int:
        op = self.g.only(self.g.consumers_of(tensor, "PRELU"), f"PRELU after {self.g.tensor(tensor).name!r}")
        self.sd.set(f"{prefix}.weight", self.g.const(op.inputs[1]).reshape(-1))
        self.visited.add(op.index)
        return op.outputs[0]

    # -- modules ---------------------------------------------------------------------------
    def conv(self, tensor: int, module: nn.Conv2d, prefix: str, target: int | None,
             padding: str = "SAME", op_type: str = "CONV_2D") -> int:
        op = self._next(tensor, op_type, target)
        # A VALID head whose kernel covers its whole input has one output: its stride is moot.
        whole = padding == "VALID" and tuple(self.g.tensor(tensor).shape[1:3]) == tuple(module.kernel_size)
        if tuple(module.kernel_size) == (1, 1):
            padding = _PADDING.get(op.options.get("padding"), padding)  # SAME ≡ VALID for 1×1
        self._check(op, None if whole else module.stride[0], padding, prefix)
        self._conv_params(op, prefix)
        return op.outputs[0]

    def conv_prelu(self, tensor: int, module: ConvPReLU, prefix: str, target: int | None) -> int:
        out = self.conv(tensor, module.conv, f"{prefix}.conv", target)
        return self._prelu(out, f"{prefix}.act")

    def blaze_block(self, tensor: int, block: BlazeBlock, prefix: str, target: int | None) -> int:
        dw_out = self.conv(tensor, block.dw, f"{prefix}.dw", target, op_type="DEPTHWISE_CONV_2D")
        pw_out = self.conv(dw_out, block.pw, f"{prefix}.pw", None)
        add = self.g.only(self.g.consumers_of(pw_out, "ADD"), f"residual ADD in {prefix}")
        skip = [t for t in add.inputs if t != pw_out]
        if len(skip) != 1 or not self._is_skip_of(skip[0], tensor, block):
            raise WeightImportError(f"{self.g.source}: residual of {prefix} (op {add.index}) is not the "
                                    f"block input{' through max-pool' if block.stride == 2 else ''}")
        if isinstance(block.act, nn.ReLU):
            return self.relu(add.outputs[0])
        return self._prelu(add.outputs[0], f"{prefix}.act")

    def relu(self, tensor: int) -> int:
        """The RELU consuming `tensor` (no parameters; checked, not assigned)."""
        op = self.g.only(self.g.consumers_of(tensor, "RELU"), f"RELU after {self.g.tensor(tensor).name!r}")
        self.visited.add(op.index)
        return op.outputs[0]

    def _is_skip_of(self, skip: int, block_in: int, block: BlazeBlock) -> bool:
        t = skip
        if block.cout > block.cin:
            op = self.g.producer.get(t)
            if op is None or op.kind != "PAD":
                return False
            pads = self.g.const(op.inputs[1])
            if pads[-1].tolist() != [0, block.cout - block.cin] or np.any(pads[:-1]):
                return False
            t = op.inputs[0]
        if block.stride == 2:
            op = self.g.producer.get(t)
            if op is None or op.kind != "MAX_POOL_2D" or op.options.get("filterWidth") != 2 \
                    or op.options.get("strideW") != 2:
                return False
            t = op.inputs[0]
        return t == block_in

    def sequence(self, tensor: int, modules: Iterable[tuple[str, nn.Module]], target: int | None) -> int:
        for prefix, m in modules:
            if isinstance(m, BlazeBlock):
                tensor = self.blaze_block(tensor, m, prefix, target)
            elif isinstance(m, ConvPReLU):
                tensor = self.conv_prelu(tensor, m, prefix, target)
            else:
                raise WeightImportError(f"no TFLite mapping for module {prefix} ({type(m).__name__})")
        return tensor

    def check_all_used(self) -> None:
        unused = [op for op in self.g.ops if op.kind in WEIGHT_OPS and op.index not in self.visited]
        if unused:
            desc = ", ".join(f"{op.kind}#{op.index}" for op in unused[:5])
            raise WeightImportError(f"{self.g.source}: {len(unused)} weight ops not matched by the model: {desc}")


def children(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    return [(f"{prefix}.{name}", m) for name, m in module.named_children()]
