"""Bad user models through the CLI: each is exit status 2, one `meshport: error: …` line on
stderr that says what is wrong (the node, the dimension, the module), and nothing written under
the output directory for that model."""
from __future__ import annotations

from pathlib import Path

import pytest

from meshport_cli import cli


SPEC = """\
id = "{id}"
targets = ["onnx/fp32", "tflite/fp32", "coreml/fp32"]

[[inputs]]
name = "image"
shape = {shape}
layout = "NCHW"

[[outputs]]
name = "y"

[tolerances]
"*/fp32" = {{ rtol = 1e-5 }}
"tflite/fp16-compute" = {{ rtol = 1e-2 }}
"""



def _refused(work: Path, mid: str, *args) -> str:
    r = cli("build", *args, "-o", "out", cwd=work)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("meshport: error: "), r.stderr
    assert not (work / "out" / mid).exists(), sorted(p.name for p in (work / "out").iterdir())
    return lines[0]


def _export(model, path: Path, shape=(1, 3, 8, 8), opset: int = 17, dynamic=None) -> None:
    import torch
    torch.onnx.export(model.eval(), (torch.rand(*shape),), str(path), input_names=["image"], output_names=["y"],
                      opset_version=opset, dynamo=False, dynamic_axes=dynamic)


def _sampler(mode: str):
    import torch
    import torch.nn.functional as F

    class Sampler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            return F.grid_sample(x, torch.tanh(self.conv(x)).permute(0, 2, 3, 1), mode=mode, align_corners=False)

    return Sampler()


def test_a_file_that_is_not_onnx(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"this is not a protobuf\x00\xff" * 10)
    (tmp_path / "bad.toml").write_text(SPEC.format(id="not_onnx", shape=[1, 3, 8, 8]))
    line = _refused(tmp_path, "not_onnx", "--spec", "bad.toml", "--onnx", "model.onnx")
    assert "model.onnx" in line and "not an ONNX model" in line


@pytest.mark.parametrize("opset", [16, 20])     # GridSample mode "bicubic" (16–19) / "cubic" (20)
def test_an_op_that_cannot_be_lowered_is_named_with_its_node(tmp_path, opset):
    _export(_sampler("bicubic"), tmp_path / "cubic.onnx", opset=opset)
    import onnx
    (node,) = [n for n in onnx.load(str(tmp_path / "cubic.onnx")).graph.node if n.op_type == "GridSample"]
    (tmp_path / "cubic.toml").write_text(SPEC.format(id="cubic", shape=[1, 3, 8, 8]))
    line = _refused(tmp_path, "cubic", "--spec", "cubic.toml", "--onnx", "cubic.onnx")
    assert node.name in line and "cubic" in line, line


def test_a_dynamic_dimension_where_the_spec_needs_a_static_one(tmp_path):
    """An export with a dynamic H whose spec says "H", and a spec dimension that is not an
    integer: the error names the dimension."""
    _export(_sampler("bilinear"), tmp_path / "dyn.onnx", dynamic={"image": {2: "H"}, "y": {2: "H"}})
    for shape, dim, what in (('[1, 3, "H", 8]', 2, "'H' (only the batch"), ("[1, 3, 8, 7.5]", 3, "7.5")):
        (tmp_path / "dyn.toml").write_text(SPEC.format(id="dyn", shape=shape))
        line = _refused(tmp_path, "dyn", "--spec", "dyn.toml", "--onnx", "dyn.onnx")
        assert f"inputs[0] (image): dimension {dim} must be a positive integer, not {what}" in line, line


def test_a_factory_that_fails_to_import(tmp_path):
    (tmp_path / "broken_models.py").write_text("import torch\nimport no_such_package_here\n\n"
                                               "def make():\n    return torch.nn.Identity()\n")
    (tmp_path / "b.toml").write_text(SPEC.format(id="broken", shape=[1, 3, 8, 8]))
    line = _refused(tmp_path, "broken", "--spec", "b.toml", "--torch", "broken_models:make")
    assert "cannot import broken_models" in line and "no_such_package_here" in line, line
    line = _refused(tmp_path, "broken", "--spec", "b.toml", "--torch", "no_such_module_either:make")
    assert "cannot import no_such_module_either" in line, line
