"""What every `meshport` sub-command shares: options accepted anywhere on the line, one-line
usage errors, option values checked against the valid list, and output paths (a path ending in
`/` or an existing directory is a directory)."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

CONVENTIONS = """\
conventions:
  Options go anywhere on the line (before or after positionals).
  -o/--out/--output PATH   where a command writes its outputs; a PATH ending in / or an existing
                           directory is a directory (predict writes DIR/<stem>.png and DIR/<stem>.json).
  --json                   print the result as JSON on stdout (progress and messages stay on stderr).
  Unknown values of --formats/--precisions/--runtime(s)/--format/--detector are refused with the
  valid list. Steps over 2 s report progress on stderr. Output of the converters' toolchains
  (TensorFlow, CUDA, absl, coremltools) goes to the log file, not the terminal:
  $MESHPORT_LOG, else $MESHPORT_CACHE/logs/meshport.log (default ~/.cache/meshport/logs/meshport.log).
  Ctrl-C / SIGTERM stop with one line (exit 130 / 143), remove temporary files, and keep the build
  steps already finished."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-commands take options anywhere (parse_intermixed_args) and whose
    usage errors are one line."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        nested = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        if nested or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> NoReturn:
        choice = re.fullmatch(r"(argument [^:]+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:       # argparse's own wording quotes every name the Python way
            message = f"{choice[1]}: unknown value {choice[2]}; valid: {choice[3].replace(chr(39), '')}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _valid(option: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise argparse.ArgumentTypeError(f"unknown value {value}; valid: {', '.join(valid)}")
    return value


def one_of(option: str, valid: Callable[[], Sequence[str]] | Sequence[str]) -> Callable[[str], str]:
    """An argparse `type`: `value` must be one of `valid` (a callable is resolved only when the
    option is given, so the parser imports nothing heavy)."""
    def check(value: str) -> str:
        return _valid(option, value.strip(), valid() if callable(valid) else valid)
    check.__name__ = option.lstrip("-")
    return check


def list_of(option: str, valid: Callable[[], Sequence[str]] | Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse `type` for a comma-separated list whose every item must be in `valid`."""
    def check(value: str) -> list[str]:
        allowed = valid() if callable(valid) else valid
        items = [_valid(option, v.strip(), allowed) for v in value.split(",") if v.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{option} needs at least one value; valid: {', '.join(allowed)}")
        return items
    check.__name__ = option.lstrip("-")
    return check


def formats() -> tuple[str, ...]:
    from modelzoo.spec import FORMATS
    return tuple(FORMATS)


def precisions() -> tuple[str, ...]:
    from modelzoo.spec import PRECISIONS
    return tuple(PRECISIONS)


def runtimes() -> tuple[str, ...]:
    import importlib

    from runtime.runners import RUNNERS
    importlib.import_module("modelzoo")      # registers the PyTorch reference runner
    return tuple(RUNNERS)


def detectors() -> tuple[str, ...]:
    from modelzoo.photo.networks import DETECTORS
    return tuple(DETECTORS)


def is_dir_path(path: str | os.PathLike) -> bool:
    """A path ending in a separator, or an existing directory, names a directory."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def output_file(path: str | os.PathLike | None, default_name: str, default_dir: Path | None = None) -> Path | None:
    """The file an `-o` value names: `path` itself, or `path/default_name` when it is a directory;
    `default_dir/default_name` when no `-o` was given (None when there is no default)."""
    if path is None:
        return None if default_dir is None else Path(default_dir) / default_name
    return Path(path) / default_name if is_dir_path(path) else Path(path)


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
