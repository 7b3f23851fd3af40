"""Toolchain chatter (TensorFlow/XLA, CUDA/cuDNN, absl, coremltools, Python warnings) goes to a
log file instead of the terminal: file descriptor 2 points at the log while a command runs, and
Meshport's own messages go to the terminal through `sys.stderr`."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
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


class Terminal(io.TextIOWrapper):
    """The terminal's stderr while the log holds file descriptor 2; remembers when Meshport last
    wrote to it (for `quiet_gaps`)."""

    last_write = 0.0

    def write(self, text: str) -> int:
        self.last_write = time.monotonic()
        return super().write(text)

    def beat(self, text: str) -> None:
        """Write without counting as output (a heartbeat does not reset the quiet gap)."""
        super().write(text)
        self.flush()


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
        terminal = Terminal(io.BufferedWriter(io.FileIO(saved, "w", closefd=False)),
                            encoding=getattr(old_stderr, "encoding", None) or "utf-8", errors="backslashreplace",
                            line_buffering=True)
        terminal.last_write = time.monotonic()
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


@contextlib.contextmanager
def quiet_gaps(enabled: bool = True, after: float = 2.0, every: float = 5.0) -> Iterator[None]:
    """While the block runs, a line with the elapsed time whenever Meshport has written nothing to
    the terminal for `after` seconds (then every `every` seconds): a long step is never silent.
    Needs the `Terminal` that `toolchain_log` installs; otherwise does nothing."""
    stream = sys.stderr
    if not enabled or not isinstance(stream, Terminal):
        yield
        return
    stop = threading.Event()
    t0 = time.monotonic()

    def watch() -> None:
        last_beat = 0.0
        while not stop.wait(0.25):
            now = time.monotonic()
            if now - stream.last_write >= after and (last_beat < stream.last_write or now - last_beat >= every):
                try:
                    stream.beat(f"  … still working, {now - t0:.0f} s\n")
                except (OSError, ValueError):
                    return
                last_beat = now

    thread = threading.Thread(target=watch, name="meshport-quiet-gaps", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1.0)
