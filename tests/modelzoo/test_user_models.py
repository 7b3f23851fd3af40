"""Models from spec files (modelzoo.user): parsing and its typed errors, samples, relative
tolerances, the build directory's source record, entry-point plugins, the ONNX import, the
AffineGrid/LogSoftmax rewrites and the torch executor of ONNX graphs — each against ONNX Runtime
or the torch model it came from. (Whole builds of foreign models: tests/e2e.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from converters.base import ConversionError
from modelzoo import user
from modelzoo.errors import RegistryError
from modelzoo.spec import Tolerance
from modelzoo.tolerances import Bounds, evaluate, resolve
from runtime.files import sha256_path

REPO = Path(__file__).resolve().parents[2]


class Tiny(torch.nn.Module):
    """conv → tanh offsets → grid_sample (zeros, align_corners=0) → pooled logits → log_softmax."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.offsets = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.head = torch.nn.Linear(3, 4)

    def forward(self, x):
        n, _, h, w = x.shape
        theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.1, 0.9, 0.0]]]).repeat(n, 1, 1)
        grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False) + 0.2 * torch.tanh(self.offsets(x)).permute(0, 2, 3, 1)
        warped = F.grid_sample(x, grid, align_corners=False)
        return F.log_softmax(self.head(warped.mean(dim=(2, 3))), dim=1)


def export(model, path: Path, shape=(1, 3, 16, 16), dynamic: dict | None = None, opset: int = 20) -> Path:
    torch.onnx.export(model.eval(), (torch.rand(*shape),), str(path), input_names=["image"], output_names=["logp"],
                      opset_version=opset, dynamo=False, dynamic_axes=dynamic)
    return path


SPEC = """\
id = "tiny_user"
onnx = "tiny.onnx"

[[inputs]]
name = "image"
shape = ["N", 3, 16, 16]
layout = "NCHW"
value_range = [-1.0, 1.0]

[[outputs]]
name = "logp"

[tolerances]
"*/fp32" = {{ rtol = 1e-5, reason = "fp32 reassociation" }}
"*/fp16" = {{ atol = 0.05 }}
"tflite/fp16-compute" = {{ atol = 0.05 }}
{extra}"""


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    return export(Tiny(), tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def spec_dir(tmp_path: Path, onnx_file: Path, extra: str = "", text: str | None = None, name="spec.toml") -> Path:
    (tmp_path / "tiny.onnx").write_bytes(onnx_file.read_bytes())
    path = tmp_path / name
    path.write_text(text if text is not None else SPEC.format(extra=extra))
    return path


@pytest.fixture(autouse=True)
def _forget_user_models():
    yield
    user._USER.clear()
    user._SEARCH.clear()


# ------------------------------------------------------------------------------ the spec file

def test_spec_file_gives_a_model_spec(tmp_path, onnx_file):
    um = user.load_spec_file(spec_dir(tmp_path, onnx_file))
    s = um.spec
    assert s.id == "tiny_user" and um.kind == "onnx"
    assert s.inputs[0].shape == (None, 3, 16, 16) and s.inputs[0].value_range == (-1.0, 1.0)
    assert s.outputs[0].shape == (1, 4)            # taken from the model: the file gave no shape
    assert set(s.targets) == {("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "fp16"), ("coreml", "fp32"),
                              ("coreml", "fp16")}
    assert s.tolerance("coreml", "fp32", "logp").rtol == 1e-5
    assert s.tolerance("tflite", "fp16-compute", "logp").atol == 0.05
    assert s.config["source_sha256"] == sha256_path(tmp_path / "tiny.onnx")


def test_the_same_spec_in_yaml_and_json_is_the_same_model(tmp_path, onnx_file):
    toml_spec = user.load_spec_file(spec_dir(tmp_path, onnx_file)).spec
    data = {"id": "tiny_user", "onnx": "tiny.onnx",
            "inputs": [{"name": "image", "shape": ["N", 3, 16, 16], "layout": "NCHW", "value_range": [-1.0, 1.0]}],
            "outputs": [{"name": "logp"}],
            "tolerances": {"*/fp32": {"rtol": 1e-5, "reason": "fp32 reassociation"}, "*/fp16": {"atol": 0.05},
                           "tflite/fp16-compute": {"atol": 0.05}}}
    (tmp_path / "spec.json").write_text(json.dumps(data))
    import yaml
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    for name in ("spec.json", "spec.yaml"):
        assert user.load_spec_file(tmp_path / name).spec.sha256() == toml_spec.sha256()


@pytest.mark.parametrize("change, message", [
    ('id = "tiny_user"', "id must be"),
    ('shape = ["N", 3, 16, 16]', "dimension 2 must be a positive integer, not 'H'"),
    ('onnx = "tiny.onnx"', "give exactly one model source"),
    ('"*/fp16" = { atol = 0.05 }', "no tolerance for tflite/fp16, coreml/fp16"),
    ('[[outputs]]', "unknown key(s) colour"),
    ('"tflite/fp16-compute" = { atol = 0.05 }', "tolerance 'tflite/fp16-compute' bounds nothing"),
])
def test_spec_file_errors_name_the_key(tmp_path, onnx_file, change, message):
    text = SPEC.format(extra="")
    replacement = {
        'id = "tiny_user"': 'id = "tiny user!"',
        'shape = ["N", 3, 16, 16]': 'shape = ["N", 3, "H", 16]',
        'onnx = "tiny.onnx"': '',
        '"*/fp16" = { atol = 0.05 }': '',
        '[[outputs]]': 'colour = "red"\n[[outputs]]',
        '"tflite/fp16-compute" = { atol = 0.05 }': '"tflite/fp16-compute" = { reason = "x" }',
    }[change]
    assert change in text
    path = spec_dir(tmp_path, onnx_file, text=text.replace(change, replacement, 1))
    with pytest.raises(user.SpecFileError) as err:
        user.load_spec_file(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_declared_output_shape_must_be_the_models(tmp_path, onnx_file):
    text = SPEC.format(extra="").replace('name = "logp"', 'name = "logp"\nshape = [1, 10]')
    with pytest.raises(user.SpecFileError, match=r"output logp is declared \[1, 10\]; the model gives \[1, 4\]"):
        user.load_spec_file(spec_dir(tmp_path, onnx_file, text=text))


def test_a_file_that_is_not_onnx_is_a_source_error(tmp_path, onnx_file):
    path = spec_dir(tmp_path, onnx_file)
    (tmp_path / "tiny.onnx").write_text("this is not a model\n")
    with pytest.raises(user.ModelSourceError, match="is not an ONNX model"):
        user.load_spec_file(path)


def test_factory_errors_are_one_line(tmp_path, onnx_file, monkeypatch):
    path = spec_dir(tmp_path, onnx_file)
    (tmp_path / "broken_factory.py").write_text("import no_such_package_here\n")
    (tmp_path / "not_a_module.py").write_text("def make():\n    return 42\n")
    monkeypatch.chdir(tmp_path)
    cases = {"broken_factory:make": "cannot import broken_factory: ModuleNotFoundError",
             "not_a_module:make": "returned a int, not a torch.nn.Module",
             "not_a_module:missing": "has no 'missing'"}
    for factory, message in cases.items():
        with pytest.raises(user.ModelSourceError) as err:
            user.load_spec_file(path, torch=factory)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_a_zoo_id_is_refused(tmp_path, onnx_file):
    text = SPEC.format(extra="").replace('id = "tiny_user"', 'id = "attention_mesh"')
    um = user.load_spec_file(spec_dir(tmp_path, onnx_file, text=text))
    with pytest.raises(RegistryError, match="is a zoo model"):
        user.register(um)


# ------------------------------------------------------------------------------ samples

def test_samples_from_npy_npz_and_images(tmp_path, onnx_file):
    from PIL import Image
    d = tmp_path / "samples"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.save(d / "one.npy", rng.random((1, 3, 16, 16), dtype=np.float32))
    np.save(d / "stack.npy", rng.random((2, 3, 16, 16), dtype=np.float32))
    np.savez(d / "more.npz", a=rng.random((3, 16, 16), dtype=np.float32))
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(d / "white.png")
    um = user.load_spec_file(spec_dir(tmp_path, onnx_file, extra='\n'), samples=d)
    names = [n for n, _ in um.samples]
    assert names == ["more-a", "one", "stack-0", "stack-1", "white"]
    assert all(a.shape == (1, 3, 16, 16) and a.dtype == np.float32 for _, a in um.samples)
    white = dict(um.samples)["white"]
    assert np.all(white == 1.0)                      # 255 → the top of the value range [-1, 1]
    np.save(d / "wrong.npy", np.zeros((3, 15, 16), np.float32))
    with pytest.raises(user.SpecFileError, match=r"wrong.*shape \[3, 15, 16\]; the input takes \[1, 3, 16, 16\]"):
        user.load_spec_file(spec_dir(tmp_path, onnx_file), samples=d)


def test_user_input_sets_are_seeded_in_range_and_carry_the_samples(tmp_path, onnx_file):
    from validation.inputs import input_sets
    np.save(tmp_path / "x.npy", np.full((1, 3, 16, 16), 0.25, np.float32))
    um = user.register(user.load_spec_file(spec_dir(tmp_path, onnx_file), samples=tmp_path / "x.npy"))
    cases = input_sets(um.spec)
    assert [c.name for c in cases] == ["seeded-0", "seeded-1", "sample-x"]
    seeded = np.concatenate([c.array for c in cases[:2]])
    assert seeded.min() < -0.9 and seeded.max() > 0.9 and seeded.min() >= -1 and seeded.max() <= 1


def test_int8_calibration_takes_the_samples_then_seeded_inputs_in_range(tmp_path, onnx_file):
    """A user model's int8 calibration (onnx2tf's channels-last feed): its samples first, then
    seeded inputs over its value range [-1, 1] (not the zoo's face crops in [0, 1]); the zoo's face
    models keep their face crops."""
    import modelzoo
    from converters.onnx_tflite import calibration_set
    from modelzoo.data import face_calibration_set
    sample = np.full((1, 3, 16, 16), 0.25, np.float32)
    sample[0, 1] = -0.5                       # channels differ: the NCHW → NHWC move is visible
    np.save(tmp_path / "x.npy", sample)
    um = user.register(user.load_spec_file(spec_dir(tmp_path, onnx_file), samples=tmp_path / "x.npy"))
    cal = calibration_set(um.spec)
    assert cal.shape == (20, 16, 16, 3) and cal.dtype == np.float32
    np.testing.assert_array_equal(cal[0], sample[0].transpose(1, 2, 0))
    rest = cal[1:]
    assert rest.min() < -0.9 and rest.max() > 0.9 and rest.min() >= -1 and rest.max() <= 1
    np.testing.assert_array_equal(calibration_set(modelzoo.get_spec("attention_mesh")),
                                  face_calibration_set(192, 20))


def test_int8_calibration_refuses_an_input_that_is_not_an_nchw_image(tmp_path, onnx_file):
    from converters.onnx_tflite import calibration_set
    text = SPEC.format(extra="").replace('shape = ["N", 3, 16, 16]\nlayout = "NCHW"', "shape = [1, 768]")
    export(torch.nn.Linear(768, 4), tmp_path / "lin.onnx", shape=(1, 768))
    um = user.load_spec_file(spec_dir(tmp_path, tmp_path / "lin.onnx", text=text))
    with pytest.raises(ConversionError, match=r"int8 calibration needs a 4-D NCHW input; image is \[1, 768\]"):
        calibration_set(um.spec)


# ------------------------------------------------------------------------------ relative bounds

def test_rtol_bounds_relative_to_the_reference_and_fails_past_it():
    ref = np.array([0.5, -40.0, 3.0])
    b = Bounds(rtol=1e-5)
    assert b.abs_bound(ref) == pytest.approx(4e-4)
    assert evaluate("y", b, ref, ref + 0.9 * 4e-4).passed
    failed = evaluate("y", b, ref, ref + 1.1 * 4e-4)
    assert not failed.passed and "rtol 1e-05 × max|ref| 40" in failed.failures[0]
    both = Bounds(atol=1e-3, rtol=1e-5)
    assert evaluate("y", both, ref, ref + 1.3e-3).passed and not evaluate("y", both, ref, ref + 1.5e-3).passed


def test_a_spec_without_rtol_keeps_its_digest():
    import modelzoo
    spec = modelzoo.get_spec("attention_mesh")
    assert all(t.rtol is None for t in spec.tolerances.values())
    assert all("rtol" not in t for t in spec.to_dict()["tolerances"])


def test_resolve_keeps_rtol(tmp_path, onnx_file):
    spec = user.load_spec_file(spec_dir(tmp_path, onnx_file)).spec
    assert resolve(spec, "onnx", "fp32", "logp").rtol == 1e-5
    assert Tolerance(rtol=1e-5).atol is None


# ------------------------------------------------------------------------------ build directories, plugins

def test_build_directory_finds_the_model_again_from_anywhere(tmp_path, onnx_file):
    um = user.register(user.load_spec_file(spec_dir(tmp_path, onnx_file)))
    root = tmp_path / "out" / um.spec.id
    user.save_source(um.spec.id, root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import modelzoo, sys; modelzoo.use_build_dir(sys.argv[1]); "
            "print(modelzoo.get_spec('tiny_user').sha256())")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], cwd=elsewhere, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == um.spec.sha256()
    (root / "source" / user.SOURCE_ONNX).write_bytes(export(Tiny(), tmp_path / "other.onnx", shape=(1, 3, 16, 16),
                                                            opset=21).read_bytes())
    user._USER.clear()
    user.use_build_dir(tmp_path / "out")
    with pytest.raises(user.SpecFileError, match="no longer matches its build"):
        user.lookup("tiny_user")


def _plugin(tmp_path: Path, body: str) -> Path:
    site = tmp_path / "site"
    (site / "acme_zoo-0.1.dist-info").mkdir(parents=True)
    (site / "acme_zoo-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-zoo\nVersion: 0.1\n")
    (site / "acme_zoo-0.1.dist-info" / "entry_points.txt").write_text("[meshport.models]\nacme = acme_zoo\n")
    (site / "acme_zoo.py").write_text(textwrap.dedent(body))
    return site


def test_a_third_party_zoo_registers_through_an_entry_point(tmp_path):
    site = _plugin(tmp_path, """
        import torch
        from modelzoo import register_model
        from modelzoo.spec import ModelSpec, TensorSpec, Tolerance

        def spec():
            return ModelSpec(id="acme_net", description="a plugin's model", inputs=(TensorSpec("x", (1, 2)),),
                             outputs=(TensorSpec("y", (1, 2)),), preprocessing="none",
                             tolerances={("onnx", "fp32", "*"): Tolerance(atol=1e-6)}, targets=(("onnx", "fp32"),))

        class Net(torch.nn.Module):
            def forward(self, x):
                return {"y": 2 * x}

        register_model("acme_net", spec=spec)(Net)
        """)
    code = ("import modelzoo, torch; print(modelzoo.list_models()); "
            "print(modelzoo.load_model('acme_net')(torch.ones(1, 2))['y'].tolist())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])})
    assert r.returncode == 0, r.stderr
    assert "'acme_net'" in r.stdout and "'attention_mesh'" in r.stdout and "[[2.0, 2.0]]" in r.stdout


def test_a_broken_plugin_warns_and_the_zoo_still_works(tmp_path):
    site = _plugin(tmp_path, "raise RuntimeError('acme is broken')\n")
    code = "import modelzoo; print(modelzoo.list_models()); modelzoo.get_spec('acme_net')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])})
    assert "'attention_mesh'" in r.stdout
    assert "model plugin not loaded: entry point 'acme' = acme_zoo (from acme-zoo): RuntimeError: acme is broken" in r.stderr
    assert "UnknownModelError" in r.stderr and "plugins that failed to load" in r.stderr


# ------------------------------------------------------------------------------ the ONNX import

def test_import_fixes_a_dynamic_input_and_refuses_what_stays_dynamic(tmp_path, onnx_file):
    from converters.onnx_import import normalise, read_onnx
    spec = user.load_spec_file(spec_dir(tmp_path, onnx_file)).spec
    dyn = export(Tiny(), tmp_path / "dyn.onnx", dynamic={"image": {0: "batch", 2: "h", 3: "w"}})
    proto = normalise(read_onnx(dyn), spec)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 16, 16]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [1, 4]
    other = export(Tiny(), tmp_path / "s20.onnx", shape=(1, 3, 20, 16))
    with pytest.raises(ConversionError, match="input image dimension 2 is 20 in .*; the spec says 16"):
        normalise(read_onnx(other), spec)

    class DataDependent(torch.nn.Module):   # the number of positive values: known only at run time
        def forward(self, x):
            return torch.nonzero(x > 0).float().sum(dim=1, keepdim=True).transpose(0, 1)

    nz = export(DataDependent(), tmp_path / "nz.onnx", opset=17)
    with pytest.raises(ConversionError, match=r"dimension \d is dynamic") as err:
        normalise(read_onnx(nz), spec)
    assert "NonZero" in str(err.value) or "tensor" in str(err.value)
    with pytest.raises(ConversionError, match="is not an ONNX model"):
        (tmp_path / "junk.onnx").write_bytes(b"\x00\x01junk")
        read_onnx(tmp_path / "junk.onnx")


def _ort(path_or_proto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort
    data = path_or_proto.SerializeToString() if hasattr(path_or_proto, "SerializeToString") else str(path_or_proto)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.mark.parametrize("align", [0, 1])
def test_affine_grid_and_log_softmax_rewrites_match_onnx_runtime(tmp_path, align):
    import onnx

    from converters.onnx_rewrites import gpu_rewrites

    class Stn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.loc = torch.nn.Linear(3 * 8 * 12, 6)

        def forward(self, x):
            theta = 0.5 * self.loc(x.flatten(1)).view(-1, 2, 3) + torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
            grid = F.affine_grid(theta, [2, 3, 5, 7], align_corners=bool(align))
            return F.log_softmax(F.grid_sample(x, grid, align_corners=bool(align)).flatten(1), dim=1)

    path = export(Stn(), tmp_path / "stn.onnx", shape=(2, 3, 8, 12))
    proto = onnx.load(str(path))
    rewritten = gpu_rewrites(proto)
    ops = {n.op_type for n in rewritten.graph.node}
    assert "AffineGrid" not in ops and "LogSoftmax" not in ops and {"MatMul", "ReduceMax", "Log"} <= ops
    x = np.random.default_rng(2).random((2, 3, 8, 12), dtype=np.float32) * 4 - 2
    (want,), (got,) = _ort(proto, x), _ort(rewritten, x)
    err = np.abs(got - want).max()
    assert err <= 1e-5 * np.abs(want).max(), err
    assert np.abs(want).max() > 1.0          # a real spread of log-probabilities, not all zeros


def test_torch_executor_of_an_onnx_graph_matches_onnx_runtime(tmp_path):
    from converters.onnx_torch import onnx_module, unsupported

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.c1 = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)
            self.bn = torch.nn.BatchNorm2d(6).eval()
            self.c2 = torch.nn.Conv2d(6, 2, 3, padding=1)
            self.fc = torch.nn.Linear(6 * 4 * 4, 5)

        def forward(self, x):
            y = F.relu(self.bn(self.c1(x)))
            grid = torch.tanh(self.c2(y)).permute(0, 2, 3, 1) * 1.2
            s = F.grid_sample(y, grid, mode="nearest", padding_mode="reflection", align_corners=True)
            s = torch.cat([F.max_pool2d(s, 2), F.avg_pool2d(y, 2)], dim=1)
            up = F.interpolate(s, scale_factor=2, mode="bilinear", align_corners=False)[:, :, 1:, :]
            z = F.pad(up, (0, 0, 1, 0)).mean(dim=(2, 3))
            logits = self.fc(F.adaptive_avg_pool2d(torch.cat([s, s], 1)[:, :6], 4).flatten(1))
            return F.log_softmax(logits, dim=1) + z.sum(dim=1, keepdim=True)

    import onnx
    path = export(Mixed(), tmp_path / "mixed.onnx")
    proto = onnx.load(str(path))
    assert unsupported(proto) == []
    module = onnx_module(proto)
    x = np.random.default_rng(4).random((1, 3, 16, 16), dtype=np.float32)
    (want,) = _ort(path, x)
    with torch.no_grad():
        got = module(torch.from_numpy(x))["logp"].numpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    traced = torch.jit.trace(module, torch.from_numpy(x), check_trace=False, strict=False)   # as for Core ML
    with torch.no_grad():
        assert np.allclose(traced(torch.from_numpy(x))["logp"].numpy(), got, rtol=0, atol=1e-6)
    proto.graph.node[0].op_type = "NoSuchOp"
    assert unsupported(proto)[0].startswith("NoSuchOp (")
    with pytest.raises(ConversionError, match="no torch equivalent for NoSuchOp"):
        onnx_module(proto)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "meshport", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_build_options_are_checked_before_anything_runs(tmp_path, onnx_file):
    path = spec_dir(tmp_path, onnx_file)
    out = tmp_path / "out"
    cases = {("build", "--onnx", str(tmp_path / "tiny.onnx")): "--onnx needs --spec FILE",
             ("build",): "name a zoo model",
             ("build", "other_id", "--spec", str(path)): "the spec file describes 'tiny_user', not 'other_id'",
             ("build", "--spec", str(path), "--onnx", "a.onnx", "--torch", "m:f"): "not both"}
    for args, message in cases.items():
        r = _cli(*args, "-o", str(out))
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
