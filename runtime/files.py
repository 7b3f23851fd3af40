"""Atomic writes: a reader sees the old file or the new one, never half of either; a failed write
leaves nothing behind. JSON reads raise `FileFormatError` naming the file and what it should hold."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import FileFormatError


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path` (file or directory); it replaces `path` only if the block
    succeeds and produced it (an existing directory only by a directory). The temporary directory
    is removed either way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {path.name}")
        if path.is_dir() and not path.is_symlink():
            if not tmp.is_dir():   # a directory is replaced only by a directory (an .mlpackage rebuilt)
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):          # NumPy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> str:
    """The one JSON style of every file Meshport writes (sorted keys, two-space indent, newline;
    NumPy scalars as numbers)."""
    return json.dumps(data, indent=2, sort_keys=True, default=_plain) + "\n"


def write_json_atomic(path: Path | str, data: Any) -> None:
    write_text_atomic(path, dumps(data))


def read_json(path: Path | str, what: str = "JSON file", error: type[Exception] = FileFormatError) -> Any:
    """Parse `path`; a missing or corrupt file raises `error` saying which file and what it should be."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise error(f"no {what} at {path}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"corrupt {what} {path}: {type(exc).__name__}: {exc}") from exc


def sha256_path(path: Path | str) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(bytes.fromhex(sha256_path(p)))
        return h.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def size_path(path: Path | str) -> int:
    """Bytes of a file, or of all files under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
