"""Runners: one contract for every runtime (see base.py)."""
from .base import (RUNNERS, Availability, InputMismatchError, OutputError, Runner, RunnerError, RunnerUnavailable,
                   get_runner, register_runner, runs_on_gpu)
from .impl import DEFAULT_RUNNERS

__all__ = ["RUNNERS", "DEFAULT_RUNNERS", "Availability", "InputMismatchError", "OutputError", "Runner", "RunnerError",
           "runner_for",
           "RunnerUnavailable", "get_runner", "register_runner", "runs_on_gpu"]


def runner_for(name: str, spec, root, entry: dict, threads: int | None = None) -> Runner:
    """A runner for one artifact of a build record (`entry` from build.json's "artifacts")."""
    from pathlib import Path
    cls = get_runner(name)
    if cls.format != entry["format"]:
        raise RunnerError(f"runner {name} runs {cls.format} artifacts, not {entry['format']}")
    layout = entry["inputs"][0].get("layout") if entry.get("inputs") else None
    return cls(spec, Path(root) / entry["path"], input_layout=layout, threads=threads)


# Runtime-specific timing runners (ONNX Runtime CUDA, Core ML per compute unit) live with the
# latency harness; importing them here keeps the registry complete whichever module loads first.
from ..bench import runners as _timing_runners  # noqa: E402,F401
