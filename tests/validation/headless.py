"""Headless Chromium for the report tests: where it is, and one page loaded in it."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SKIP_REASON = "no Chromium: `make test` installs Debian's chromium; apt was unavailable here"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def load(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium run headless on `page` with extra flags (`--screenshot=…`, `--dump-dom`)."""
    cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
