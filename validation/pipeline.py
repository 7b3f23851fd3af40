"""The photo pipeline (modelzoo.photo) on any built artifact: the detector and the landmark
model each run through a runner, so QA can compare formats on whole photos."""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np

import modelzoo
from modelzoo.errors import MeshportError
from modelzoo.photo import FacePipeline

from .runners import DEFAULT_RUNNERS, Runner, get_runner, runner_for
from .runners.impl import TorchRunner

DETECTOR = "face_detector"


class PipelineBuildError(MeshportError):
    """A build directory lacks an artifact the photo pipeline needs."""


class RunnerNetwork:
    """A runner as the pipeline's network callable (NCHW batch → outputs); keeps the runner
    reachable for its timings."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.input_name = runner.spec.inputs[0].name

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner.infer({self.input_name: x})


def _artifact_runner(model: str, build: Path, fmt: str, precision: str, runtime: str | None,
                     threads: int | None) -> Runner:
    record = Path(build) / model / "build.json"
    if not record.is_file():
        raise PipelineBuildError(f"no build of {model} in {build} (expected {record}); "
                                 f"run `meshport build {model} --out {build}`")
    entries = json.loads(record.read_text())["artifacts"]
    entry = next((a for a in entries if a["format"] == fmt and a["precision"] == precision), None)
    if entry is None:
        have = ", ".join(sorted(f"{a['format']}/{a['precision']}" for a in entries))
        raise PipelineBuildError(f"{model} has no {fmt}/{precision} artifact in {build} (built: {have})")
    name = runtime
    if name is None:
        names = [n for n in DEFAULT_RUNNERS.get(fmt, ()) if get_runner(n).is_available().ok]
        if not names:
            raise PipelineBuildError(f"no runner available on this machine for {fmt} artifacts")
        name = names[0]
    return runner_for(name, modelzoo.get_spec(model), record.parent, entry, threads=threads)


def open_pipeline(stack: ExitStack, landmark_model: str = "attention_mesh", *, build: Path | str | None = None,
                  fmt: str = "pytorch", precision: str = "fp32", runtime: str | None = None,
                  threads: int | None = None, cache_dir: Path | None = None, **options) -> FacePipeline:
    """A FacePipeline whose two networks run on `fmt`/`precision` artifacts of `build`
    (`<build>/face_detector/`, `<build>/<landmark_model>/`), or on the PyTorch models when
    fmt is "pytorch". Runners are closed when `stack` closes. `options` go to FacePipeline."""
    spec = modelzoo.get_spec(landmark_model)
    if "landmarks" not in {o.name for o in spec.outputs} or spec.inputs[0].layout != "NCHW":
        raise PipelineBuildError(f"{landmark_model} is not a landmark model taking an NCHW image")
    runners = []
    for model in (DETECTOR, landmark_model):
        if fmt == "pytorch":
            r = TorchRunner(modelzoo.get_spec(model), threads=threads,
                            model=modelzoo.load_model(model, pretrained=modelzoo.has_pretrained(model),
                                                      cache_dir=cache_dir))
        else:
            if build is None:
                raise PipelineBuildError(f"--build is needed to run {fmt} artifacts")
            r = _artifact_runner(model, Path(build), fmt, precision, runtime, threads)
        runners.append(stack.enter_context(r))
    det, lm = runners
    return FacePipeline(RunnerNetwork(det), RunnerNetwork(lm), detector_size=int(det.spec.inputs[0].shape[-1]),
                        landmark_size=int(lm.spec.inputs[0].shape[-1]), **options)


def compare_photos(results: dict[str, "object"]) -> dict[str, dict]:
    """Largest-face landmark error of each candidate PhotoResult against the "pytorch" one:
    max / mean px and mean % of the inter-ocular distance (33–263), per photo."""
    ref = results["pytorch"]
    out = {}
    for name, res in results.items():
        if name == "pytorch":
            continue
        if len(res.faces) != len(ref.faces):
            out[name] = {"faces": len(res.faces), "reference_faces": len(ref.faces)}
            continue
        rows = []
        for a, b in zip(ref.faces, res.faces):
            e = np.linalg.norm(a.landmarks[:, :2] - b.landmarks[:, :2], axis=1)
            iod = float(np.linalg.norm(a.landmarks[33, :2] - a.landmarks[263, :2]))
            rows.append({"max_px": float(e.max()), "mean_px": float(e.mean()),
                         "mean_iod_pct": float(100 * e.mean() / iod) if iod > 0 else None,
                         "box_max_px": float(np.abs(a.box - b.box).max())})
        out[name] = {"faces": len(res.faces), "per_face": rows}
    return out
