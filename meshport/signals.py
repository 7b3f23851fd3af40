"""Ctrl-C and SIGTERM: the command unwinds (so temporary files are removed and finished build
steps stay recorded), prints one line and exits 130 / 143."""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator

MESSAGE = "meshport: interrupted"


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM; not an Exception, so no `except Exception`
    in a converter swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def status(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into `Interrupted` inside the block; a second signal while the first
    unwinds is ignored so the clean-up runs to its end. Handlers are restored on exit."""
    signums = [signal.SIGINT, signal.SIGTERM]
    try:
        previous = {s: signal.getsignal(s) for s in signums}
    except ValueError:                      # not the main thread: leave signals alone
        yield
        return

    def handler(signum, frame):
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    try:
        for s in signums:
            signal.signal(s, handler)
    except ValueError:
        yield
        return
    try:
        yield
    except KeyboardInterrupt:               # raised by code that installed its own SIGINT handling
        raise Interrupted(signal.SIGINT) from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
