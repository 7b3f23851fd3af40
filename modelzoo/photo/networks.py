"""The photo pipeline's two networks (detector, landmark model) on PyTorch or on built artifacts:
each runs through a runner of the runtime, so every format runs the same whole-photo pipeline."""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np

from runtime.errors import MeshportError
from runtime.record import BuildRecord
from runtime.runners import DEFAULT_RUNNERS, Runner, get_runner, runner_for

from .. import registry as modelzoo
from .pipeline import FacePipeline

DETECTOR = "face_detector"
# The zoo's face detectors the pipeline can use (one output contract: boxes, keypoints, scores
# decoded in the network); short range finds faces down to ~10% of the frame width, full range
# down to ~4%.
DETECTORS = ("face_detector", "face_detector_full")


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


def built_targets(model: str, build: Path | str) -> set[tuple[str, str]]:
    return {a.key for a in BuildRecord.load(build, modelzoo.get_spec(model)).artifacts}


def _artifact_runner(model: str, build: Path, fmt: str, precision: str, runtime: str | None,
                     threads: int | None) -> Runner:
    spec = modelzoo.get_spec(model)
    record = BuildRecord.load(build, spec)
    entry = record.artifact(fmt, precision)
    return runner_for(runtime or default_runner(fmt), spec, record.root, entry, threads=threads)


def default_runner(fmt: str) -> str:
    """The first runner of DEFAULT_RUNNERS[fmt] this machine can run."""
    names = [n for n in DEFAULT_RUNNERS.get(fmt, ()) if get_runner(n).is_available().ok]
    if not names:
        raise PipelineBuildError(f"no runner available on this machine for {fmt} artifacts")
    return names[0]


def pytorch_runner(model: str, threads: int | None = None, cache_dir: Path | None = None) -> Runner:
    """The "pytorch" runner of a zoo model (its imported weights where it has any)."""
    return get_runner("pytorch")(modelzoo.get_spec(model), threads=threads,
                                 model=modelzoo.load_model(model, pretrained=modelzoo.has_pretrained(model),
                                                           cache_dir=cache_dir))


def check_detector(detector: str) -> str:
    if detector not in DETECTORS:
        raise PipelineBuildError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
    return detector


def detector_precision(build: Path | str, fmt: str, precision: str, detector: str = DETECTOR) -> str:
    """The detector artifact paired with a landmark model's `precision`: the same precision
    when the detector ships it, else fp32 (the detector ships no int8: see its spec)."""
    have = built_targets(detector, build)
    return "fp32" if (fmt, precision) not in have and (fmt, "fp32") in have else precision


def open_pipeline(stack: ExitStack, landmark_model: str = "attention_mesh", *, build: Path | str | None = None,
                  fmt: str = "pytorch", precision: str = "fp32", runtime: str | None = None,
                  threads: int | None = None, cache_dir: Path | None = None, detector: str = DETECTOR,
                  **options) -> FacePipeline:
    """A FacePipeline whose two networks run on `fmt`/`precision` artifacts of `build`
    (`<build>/<detector>/`, `<build>/<landmark_model>/`), or on the PyTorch models when
    fmt is "pytorch"; the detector (one of DETECTORS) runs fp32 where it ships no artifact of
    `precision`. Runners are closed when `stack` closes. `options` go to FacePipeline."""
    spec = modelzoo.get_spec(landmark_model)
    if spec.landmarks is None or spec.inputs[0].layout != "NCHW":
        raise PipelineBuildError(f"{landmark_model} is not a landmark model taking an NCHW image")
    check_detector(detector)
    runners = []
    for model in (detector, landmark_model):
        if fmt == "pytorch":
            r = pytorch_runner(model, threads, cache_dir)
        else:
            if build is None:
                raise PipelineBuildError(f"--build is needed to run {fmt} artifacts")
            prec = detector_precision(build, fmt, precision, detector) if model == detector else precision
            r = _artifact_runner(model, Path(build), fmt, prec, runtime, threads)
        runners.append(stack.enter_context(r))
    det, lm = runners
    # The letterbox the detector sees is its own input size (128 short range, 192 full range).
    return FacePipeline(RunnerNetwork(det), RunnerNetwork(lm), detector_size=int(det.spec.inputs[0].shape[-1]),
                        landmark_size=int(lm.spec.inputs[0].shape[-1]), **options)
