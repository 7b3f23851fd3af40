"""The `meshport` command line as a user runs it, for the end-to-end tests: `python -m meshport`
in a subprocess, from any working directory, with this checkout importable."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _command(args: tuple[str, ...], cwd: Path) -> dict:
    return dict(args=[sys.executable, "-m", "meshport", *args], text=True, cwd=cwd,
                env={**os.environ, "PYTHONPATH": str(REPO)})


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run one command to its end; stdout and stderr captured."""
    return subprocess.run(capture_output=True, **_command(args, cwd))


def popen(*args: str, cwd: Path) -> subprocess.Popen:
    """Start one command (to run beside others); stdout and stderr piped."""
    return subprocess.Popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE, **_command(args, cwd))


def _gpu() -> bool:
    from runtime.runners import get_runner
    return get_runner("tflite-gpu").is_available().ok


GPU = _gpu()   # LiteRT's GPU accelerator works here (a Vulkan adapter, software or not)
# The runners `meshport validate` checks each format on, here.
RUNNERS = {"onnx": {"onnxruntime"}, "tflite": {"tflite", "tflite-gpu"} if GPU else {"tflite"}, "coreml": {"mil"}}
