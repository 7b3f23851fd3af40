"""The PyTorch side of the localiser records every leaf module and the spec's localisation
points; with a block declared, a broken block is named, not the leaf after it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from validation.localize import localise_torch_onnx, torch_intermediates


class Block(nn.Module):
    def __init__(self, c: int, skip: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.skip = skip

    def forward(self, x):
        return self.conv(x) + self.skip * x        # the sum is no leaf module's output


class Toy(nn.Module):
    def __init__(self, skip: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(Block(4, skip), Block(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x):
        return self.head(self.blocks(x))


X = np.random.default_rng(0).random((1, 4, 6, 6), dtype=np.float32)


@pytest.mark.parametrize("points, want", [
    ((), ["blocks.0.conv", "blocks.1.conv", "head.0", "head.1"]),
    (("Block",), ["blocks.0.conv", "blocks.0", "blocks.1.conv", "blocks.1", "head.0", "head.1"]),
    (("head",), ["blocks.0.conv", "blocks.1.conv", "head.0", "head.1", "head"]),
])
def test_records_leaves_and_the_declared_points(points, want):
    assert [n for n, _ in torch_intermediates(Toy().eval(), X, points)] == want


def test_a_declared_block_is_named_where_the_conversion_breaks_it(tmp_path: Path):
    """The ONNX model differs from the PyTorch one only in block 0's skip sum: with the block as
    a localisation point, the localiser names it; with leaves alone, the next conv."""
    path = tmp_path / "toy.onnx"
    torch.onnx.export(Toy(skip=2.0).eval(), (torch.from_numpy(X),), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    model = Toy().eval()
    assert localise_torch_onnx(model, path, X, "x", ("Block",))["module"] == "blocks.0"
    assert localise_torch_onnx(model, path, X, "x")["module"] == "blocks.1.conv"
