"""Runners: one contract for every runtime (base.py) and the registry. Importing this package
registers the built-in runners (runtimes load only when a runner does); the zoo registers its
PyTorch reference runner (`modelzoo.runner`)."""
from .base import (RUNNERS, Availability, InputMismatchError, OutputError, Runner, RunnerError, RunnerUnavailable,
                   get_runner, register_runner, runner_for, runs_on_gpu)
from . import builtin, timing  # noqa: F401,E402  (register on import)
from .builtin import DEFAULT_RUNNERS

__all__ = ["RUNNERS", "DEFAULT_RUNNERS", "Availability", "InputMismatchError", "OutputError", "Runner", "RunnerError",
           "RunnerUnavailable", "get_runner", "register_runner", "runner_for", "runs_on_gpu"]
