"""Toolchain chatter (TensorFlow/XLA, CUDA/cuDNN, absl, coremltools, Python warnings) goes to a
log file instead of the terminal: file descriptor 2 points at the log while a command runs, and
Meshport's own messages go to the terminal through `sys.stderr`."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

LOG_ENV = "MESHPORT_LOG"


def log_path() -> Path:
    """$MESHPORT_LOG, else <cache>/logs/meshport.log (the cache: $MESHPORT_CACHE, else
    $XDG_CACHE_HOME/meshport or ~/.cache/meshport)."""
    if os.environ.get(LOG_ENV):
        return Path(os.environ[LOG_ENV]).expanduser()
    cache = os.environ.get("MESHPORT_CACHE")
    root = Path(cache).expanduser() if cache else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshport"
    return root / "logs" / "meshport.log"


def _real_stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno() if sys.stderr.fileno() == 2 else None
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@contextlib.contextmanager
def toolchain_log(command: str, path: Path | None = None) -> Iterator[Path | None]:
    """While the block runs, third-party output goes to `path` (default `log_path()`): Python
    logging and warnings always, C-level writes to stderr when `sys.stderr` is the process's
    stderr. Yields the log's path, or None when it cannot be opened (then nothing is redirected)."""
    path = path or log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    except OSError:
        yield None
        return
    log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} pid {os.getpid()}: meshport {command}\n")
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level or logging.WARNING, logging.INFO))
    logging.captureWarnings(True)
    fd = _real_stderr_fd()
    saved = terminal = old_stderr = None
    if fd is not None:
        sys.stderr.flush()
        saved = os.dup(fd)
        os.dup2(log.fileno(), fd)
        old_stderr = sys.stderr
        terminal = open(saved, "w", buffering=1, encoding=getattr(old_stderr, "encoding", None) or "utf-8",
                        errors="backslashreplace", closefd=False)
        sys.stderr = terminal
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
        if saved is not None:
            terminal.flush()
            sys.stderr = old_stderr
            os.dup2(saved, fd)
            os.close(saved)
        log.close()
