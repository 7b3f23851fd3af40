"""The command line as a new user meets it: options anywhere, --version, -o and --json, option
values checked, bench keeping the release evidence, Ctrl-C/SIGTERM, huge photos, quiet toolchains,
progress, --detector. Real subprocesses and real files."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).parents[1]
NOISE = ("cuda", "cudnn", "absl", "warning", "xnnpack", "tensorflow")


def meshport(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshport", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture()
def crop(tmp_path) -> Path:
    from modelzoo.data import SAMPLE_FACE
    path = tmp_path / "face.png"
    path.write_bytes(Path(SAMPLE_FACE).read_bytes())
    return path


# -- options anywhere ------------------------------------------------------------------------------

def test_options_go_before_or_after_positionals(crop, tmp_path):
    after = meshport("predict", "attention_mesh", "--crop", str(crop), "--json")
    before = meshport("predict", "--json", "attention_mesh", str(crop), "--crop")
    assert after.returncode == 0 and before.returncode == 0, after.stderr + before.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert json.loads(after.stdout)["image_size"] == [192, 192]


def test_several_positionals_still_collect_around_options(tmp_path):
    from meshport.cli import build_parser
    args = build_parser().parse_args(["predict", "attention_mesh", "a.png", "--track", "b.png", "-o", "d/", "c.png"])
    assert args.images == ["a.png", "b.png", "c.png"] and args.track and args.output == ["d/"]
    args = build_parser().parse_args(["validate", "--photos", "p.png", "q.png", "--json", "attention_mesh"])
    assert args.photos == ["p.png", "q.png"] and args.model == "attention_mesh" and args.json
    args = build_parser().parse_args(["bench", "--runs", "3", "attention_mesh", "--precisions", "fp16"])
    assert args.model == "attention_mesh" and args.runs == 3 and args.precisions == ["fp16"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "attention_mesh", "--no-such-option"])


# -- --version -------------------------------------------------------------------------------------

def test_version_comes_from_the_package_metadata_and_imports_no_tensorflow():
    from importlib import metadata
    code = ("import sys\nfrom meshport.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None)\nprint('loaded:', [m for m in ('tensorflow', 'torch', 'coremltools') "
            "if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    first, *rest = r.stdout.splitlines()
    assert first == f"meshport {metadata.version('meshport')}"
    assert f"torch {metadata.version('torch')}" in rest[0]
    assert rest[-1] == "loaded: []"


# -- -o / --json -----------------------------------------------------------------------------------

def test_o_naming_a_directory_writes_stem_png_and_json(crop, tmp_path):
    out = tmp_path / "new"                                    # does not exist: the trailing / makes it a directory
    r = meshport("predict", "attention_mesh", str(crop), "--crop", "-o", f"{out}/")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["face.json", "face.png"]
    assert len(json.loads((out / "face.json").read_text())["landmarks"]) == 478
    existing = tmp_path / "there"
    existing.mkdir()
    r = meshport("predict", "attention_mesh", str(crop), "--crop", "-o", str(existing), "-q")  # existing, no slash
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["face.json", "face.png"]


def test_o_naming_files_and_json_printing(crop, tmp_path):
    png, res = tmp_path / "o" / "overlay.png", tmp_path / "o" / "lm.json"
    r = meshport("predict", "attention_mesh", str(crop), "--crop", "-o", str(png), "--out", str(res), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(res.read_text())
    with Image.open(png) as im:
        assert im.format == "PNG"
    r = meshport("predict", "attention_mesh", str(crop), "--crop", "--json", str(tmp_path / "old.json"))
    assert r.returncode == 2 and "-o" in one_line(r) and not (tmp_path / "old.json").exists()
    r = meshport("predict", "attention_mesh", str(crop), str(crop), "--crop", "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "directory" in one_line(r) and not (tmp_path / "x.png").exists()


def test_json_and_out_mean_the_same_in_every_command():
    """--json is a flag (print JSON on stdout) wherever it exists, and -o/--out/--output share one dest."""
    import argparse

    from meshport.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = 0
    for name, p in sub.choices.items():
        for a in p._actions:
            if "--json" in a.option_strings:
                assert a.nargs == 0, f"{name} --json takes a value"
            outs = {"-o", "--out", "--output"} & set(a.option_strings)
            if outs and name not in ("pull", "keygen"):     # the store commands keep -o/--output
                assert outs == {"-o", "--out", "--output"}, f"{name}: {a.option_strings}"
                seen += 1
    assert seen >= 4          # build, release, bench, predict


# -- option values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, option, valid", [
    (("bench", "attention_mesh", "--precisions", "fp8"), "--precisions", "fp32, fp16, int8"),
    (("bench", "attention_mesh", "--runtimes", "onnxruntime,tensorrt"), "--runtimes", "onnxruntime"),
    (("bench", "attention_mesh", "--photo", "--format", "tpu"), "--format", "tflite"),
    (("build", "attention_mesh", "--formats", "onnx,tensorrt"), "--formats", "pytorch, onnx, tflite, coreml"),
    (("build", "attention_mesh", "--precisions", "fp8"), "--precisions", "fp32, fp16, int8"),
    (("predict", "attention_mesh", "--format", "tpu"), "--format", "onnx"),
    (("predict", "attention_mesh", "--precision", "fp8"), "--precision", "int8"),
    (("predict", "attention_mesh", "--runtime", "nope"), "--runtime", "tflite-ref"),
    (("predict", "attention_mesh", "--detector", "nope"), "--detector", "face_detector"),
    (("store", "bogus"), "ACTION", "fsck, repair, alias"),
    (("publish", "attention_mesh", "--version", "1.0.0", "--precisions", "fp8"), "--precisions", "fp32, fp16, int8"),
    (("pull", "attention_mesh@1.0.0", "--format", "tflit"), "--format", "onnx, tflite, coreml"),
    (("verify", "attention_mesh@1.0.0", "--precision", "fp8"), "--precision", "fp32, fp16, int8"),
])
def test_unknown_values_are_refused_with_the_valid_list(tmp_path, args, option, valid):
    extra = {"bench": ("--build", str(tmp_path)), "store": (), "publish": ("--build", str(tmp_path)),
             "pull": ("-o", str(tmp_path / "pulled")), "verify": ()}.get(args[0], ("-q",))
    r = meshport(*args, *extra)
    line = one_line(r)
    assert r.returncode == 2 and option in line and valid in line
    assert "[" not in line and "'" not in line                  # no Python reprs
    assert list(tmp_path.iterdir()) == []


# -- bench keeps the release evidence --------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx_build")
    r = meshport("build", "face_detector", "--formats", "onnx", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return out


def test_bench_writes_its_own_file_and_latency_json_only_when_asked(onnx_build, tmp_path):
    root = onnx_build / "face_detector"
    (root / "latency.json").unlink(missing_ok=True)
    common = ("--build", str(onnx_build), "--runtimes", "onnxruntime", "--runs", "2", "--warmup", "0")
    r = meshport("bench", "face_detector", *common, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["latency"] == str(root / "bench.json") and not out["evidence"]
    assert [x["runtime"] for x in json.loads((root / "bench.json").read_text())["records"]] == ["onnxruntime"]
    assert not (root / "latency.json").exists()
    r = meshport("bench", "face_detector", *common, "-o", f"{tmp_path}/mine/", "-q")
    assert r.returncode == 0 and (tmp_path / "mine" / "bench.json").exists(), r.stderr
    assert not (root / "latency.json").exists()
    r = meshport("bench", "face_detector", *common, "--update-evidence", "-q")
    assert r.returncode == 0 and (root / "latency.json").exists(), r.stderr
    r = meshport("bench", "face_detector", *common, "--precisions", "fp8")
    assert r.returncode == 2 and "fp32, fp16, int8" in one_line(r)


def test_bench_reports_progress_on_stderr_when_it_is_not_a_terminal(onnx_build, tmp_path):
    r = meshport("bench", "face_detector", "--build", str(onnx_build), "--runtimes", "onnxruntime", "--runs", "1500",
                 "--warmup", "0", "-o", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    beats = [line for line in r.stderr.splitlines() if line.strip().startswith("bench ") and "face_detector.onnx" in line]
    assert beats, r.stderr
    done = [int(line.split(": ")[1].split("/")[0]) for line in beats]
    assert done == sorted(done) and all(line.endswith(" s") and "/1500 runs" in line for line in beats)
    assert "median" in r.stdout and not any(w in r.stderr.lower() for w in NOISE)


# -- Ctrl-C and SIGTERM ----------------------------------------------------------------------------

def _interrupt_build(out: Path, tmp: Path, log: Path, signum: int) -> subprocess.CompletedProcess:
    """Start `meshport build face_detector --formats onnx,tflite --json`, wait until build.json records
    the finished ONNX step and the TFLite step has run a while, then send `signum`."""
    env = {**os.environ, "TMPDIR": str(tmp), "MESHPORT_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, "-m", "meshport", "build", "face_detector", "--formats", "onnx,tflite",
                             "-o", str(out), "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    record = out / "face_detector" / "build.json"
    deadline = time.monotonic() + 120
    while not (record.exists() and "face_detector.onnx" in record.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the ONNX step did not finish"
        time.sleep(0.1)
    time.sleep(3.0)                                   # inside onnx->tflite (it takes over 10 s)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp-" in p.name or p.suffix == ".tflite")


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_build_says_one_line_cleans_up_and_keeps_finished_steps(tmp_path, signum, status):
    out, tmp, log = tmp_path / "out", tmp_path / "tmp", tmp_path / "meshport.log"
    tmp.mkdir()
    r = _interrupt_build(out, tmp, log, signum)
    assert r.returncode == status and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip() == "meshport: interrupted", r.stderr
    assert list(tmp.iterdir()) == [], r.stderr          # the converters' temporary directories are gone
    assert _leftovers(out) == [], r.stderr               # no half-written artifact, no atomic temp
    record = json.loads((out / "face_detector" / "build.json").read_text())
    assert [a["path"] for a in record["artifacts"]] == ["face_detector.onnx"]
    if signum != signal.SIGINT:
        return
    # the re-run skips the finished step; progress (with heartbeats) on stderr, toolchain noise in the log
    again = meshport("build", "face_detector", "--formats", "onnx,tflite", "-o", str(out),
                     env={"TMPDIR": str(tmp), "MESHPORT_LOG": str(log)})
    assert again.returncode == 0, again.stderr
    assert "face_detector.onnx: up to date" in again.stderr
    assert "2 built, 1 up to date" in again.stdout
    beats = [line for line in again.stderr.splitlines() if "onnx->tflite: still running" in line]
    assert beats and all(line.rstrip().endswith(" s") for line in beats)
    assert not [line for line in again.stderr.splitlines() if any(w in line.lower() for w in NOISE)]
    assert "XNNPACK" in log.read_text()                # what the TFLite interpreter printed went to the log


def test_tensorflow_import_noise_goes_to_the_log(tmp_path):
    log = tmp_path / "tf.log"
    code = ("import sys\nfrom meshport.logs import toolchain_log\nwith toolchain_log('test', __import__('pathlib')"
            f".Path({str(log)!r})):\n    import tensorflow\n    import warnings\n    warnings.warn('a third-party "
            "WARNING')\n    print('ours', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "ours"
    text = log.read_text()
    assert "a third-party WARNING" in text
    assert any(w in text.lower() for w in ("cuda", "absl", "onednn")), text


def test_heartbeat_starts_after_its_delay(capsys):
    from converters.build import Heartbeat
    with Heartbeat("slow step", after=0.2, every=0.2):
        time.sleep(0.75)
    lines = capsys.readouterr().err.splitlines()
    assert 2 <= len(lines) <= 4 and all("slow step: still running" in line for line in lines)
    with Heartbeat("quick step", after=0.5, every=0.2):
        time.sleep(0.25)
    assert capsys.readouterr().err == ""


# -- huge photos -----------------------------------------------------------------------------------

def _blank_png(path: Path, width: int, height: int) -> None:
    """An 8-bit grayscale PNG of zeros, written row by row (never the whole image in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_a_225_megapixel_photo_is_one_typed_line(tmp_path):
    from modelzoo.photo.image import ImageTooLargeError, load_image
    huge = tmp_path / "huge.png"
    _blank_png(huge, 15_000, 15_000)
    assert huge.stat().st_size < 1_000_000
    with pytest.raises(ImageTooLargeError, match="15000×15000 \\(225.0 megapixels\\); the limit is 89.5"):
        load_image(huge)
    r = meshport("predict", "attention_mesh", str(huge), "-o", str(tmp_path / "o.png"))
    assert r.returncode == 2 and "225.0 megapixels" in one_line(r) and "DecompressionBomb" not in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_the_pixel_limit_is_exact(tmp_path):
    from modelzoo.photo.image import ImageTooLargeError, load_image
    small = tmp_path / "small.png"
    _blank_png(small, 10, 10)
    assert load_image(small, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(ImageTooLargeError, match="10×10"):
        load_image(small, max_pixels=99)


# -- predict --detector ----------------------------------------------------------------------------

def test_predict_detector_chooses_the_face_detector(tmp_path):
    from modelzoo.photo.networks import DETECTORS
    default = meshport("predict", "attention_mesh", "--json")
    chosen = meshport("predict", "attention_mesh", "--detector", "face_detector", "--json")
    assert default.returncode == 0 and chosen.returncode == 0, default.stderr + chosen.stderr
    assert json.loads(default.stdout) == json.loads(chosen.stdout)
    for name in DETECTORS:              # the named detector is the one the pipeline looks for in the build
        r = meshport("predict", "attention_mesh", "--detector", name, "--format", "onnx", "--build", str(tmp_path))
        assert r.returncode == 2 and f"no build record of {name}" in one_line(r)


def test_a_silent_stretch_gets_a_heartbeat_line(tmp_path):
    code = ("import sys, time\nfrom pathlib import Path\nfrom meshport.logs import quiet_gaps, toolchain_log\n"
            f"with toolchain_log('t', Path({str(tmp_path / 'l.log')!r})), quiet_gaps(after=0.5, every=1.0):\n"
            "    print('start', file=sys.stderr)\n    time.sleep(2.2)\n    print('middle', file=sys.stderr)\n"
            "    time.sleep(0.3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "start" and lines[-1] == "middle"
    beats = lines[1:-1]              # at 0.5 s, 1.5 s of the quiet stretch; none in the last 0.3 s
    assert len(beats) == 2 and all("still working" in b and b.endswith(" s") for b in beats), lines
