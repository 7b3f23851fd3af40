"""Store backends over fsspec: a local directory (default), `s3://` (s3fs) and read-only
`http(s)://`. Each offers whole-object atomic writes, an exclusive create (the version claim) and
an atomic read-modify-write of one object (the index): a file lock locally, compare-and-swap on
the object's ETag (`If-Match` / `If-None-Match: *`) on S3."""
from __future__ import annotations

import contextlib
import errno
import os
import random
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .errors import ReadOnlyStoreError, StoreError

S3_ENDPOINT_ENV = "MESHPORT_S3_ENDPOINT"
CAS_ATTEMPTS = 50


class CASConflict(Exception):
    """The object changed between read and conditional write (internal; retried)."""


class Backend:
    """Paths are `/`-separated and relative to the store root."""

    read_only = False
    supports_listing = True

    def __init__(self, fs: Any, root: str, url: str):
        self.fs, self.root, self.url = fs, root.rstrip("/"), url

    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    # -- reading -------------------------------------------------------------------------------
    def read(self, rel: str) -> bytes:
        with self._io(f"read {rel}"):
            return self.fs.cat_file(self._p(rel))

    def open(self, rel: str) -> IO[bytes]:
        with self._io(f"open {rel}"):
            return self.fs.open(self._p(rel), "rb")

    def exists(self, rel: str) -> bool:
        with self._io(f"stat {rel}"):
            return bool(self.fs.exists(self._p(rel)))

    def listdir(self, rel: str) -> list[str]:
        """Names directly under `rel` ([] when it does not exist)."""
        with self._io(f"list {rel or '/'}"):
            try:
                entries = self.fs.ls(self._p(rel), detail=False)
            except FileNotFoundError:
                return []
        base = self._p(rel).rstrip("/") + "/"
        return sorted({e.rstrip("/")[len(base):].split("/")[0] for e in entries
                       if e.rstrip("/").startswith(base) and len(e.rstrip("/")) > len(base)})

    def local_path(self, rel: str) -> Path | None:
        return None

    # -- writing -------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.url} is read-only (http stores are served, not written); "
                                     "publish to the local directory or s3:// URL behind it")

    def write(self, rel: str, data: bytes) -> None:
        """Replace the object atomically (readers see the old or the new bytes, never a mix)."""
        self._writable()
        with self._io(f"write {rel}"):
            self.fs.pipe_file(self._p(rel), data)

    def upload(self, rel: str, local: Path) -> None:
        self._writable()
        with self._io(f"upload {rel}"):
            self.fs.put_file(str(local), self._p(rel))

    def create(self, rel: str, data: bytes) -> None:
        """Create the object only if it does not exist; FileExistsError otherwise."""
        raise NotImplementedError

    def delete_tree(self, rel: str) -> None:
        self._writable()
        with self._io(f"delete {rel}"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self._p(rel), recursive=True)

    def update(self, rel: str, fn: Callable[[bytes | None], bytes]) -> bytes:
        """Atomic read-modify-write of one object; `fn` gets the current bytes (None if absent)
        and may run more than once. Returns what was written."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, FileExistsError, CASConflict, StoreError):
            raise
        except Exception as exc:  # transport errors (aiohttp, botocore, OSError) → one readable line
            if not _is_transport_error(exc):
                raise
            raise StoreError(f"{self.url}: {what} failed: {type(exc).__name__}: {exc}".strip()) from exc


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    mod = type(exc).__module__
    return mod.startswith(("aiohttp", "botocore", "aiobotocore", "s3fs"))


class LocalBackend(Backend):
    def __init__(self, root: Path | str):
        import fsspec
        path = Path(root).expanduser().absolute()
        super().__init__(fsspec.filesystem("file"), str(path), str(path))
        self.path = path

    def local_path(self, rel: str) -> Path:
        return self.path / rel if rel else self.path

    def write(self, rel: str, data: bytes) -> None:
        dest = self.local_path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def upload(self, rel: str, local: Path) -> None:
        import shutil
        dest = self.local_path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def create(self, rel: str, data: bytes) -> None:
        dest = self.local_path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)   # FileExistsError if taken
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def delete_tree(self, rel: str) -> None:
        import shutil
        p = self.local_path(rel)
        if p.is_dir():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def update(self, rel: str, fn: Callable[[bytes | None], bytes]) -> bytes:
        import fcntl
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)       # per open file: excludes other threads and processes
            try:
                p = self.local_path(rel)
                current = p.read_bytes() if p.exists() else None
                new = fn(current)
                self.write(rel, new)
                return new
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class S3Backend(Backend):
    def __init__(self, url: str, endpoint_url: str | None = None, **storage_options: Any):
        import fsspec
        endpoint_url = endpoint_url or os.environ.get(S3_ENDPOINT_ENV) or None
        opts = {"use_listings_cache": False, "skip_instance_cache": True, **storage_options}
        if endpoint_url:
            opts["endpoint_url"] = endpoint_url
        try:
            fs = fsspec.filesystem("s3", **opts)
        except ImportError as exc:  # pragma: no cover - s3fs is in the lock
            raise StoreError(f"s3:// stores need s3fs: {exc}") from None
        bucket_prefix = url[len("s3://"):].strip("/")
        if not bucket_prefix:
            raise StoreError(f"{url}: expected s3://BUCKET[/PREFIX]")
        super().__init__(fs, bucket_prefix, url.rstrip("/"))

    def create(self, rel: str, data: bytes) -> None:
        with self._io(f"create {rel}"):
            self.fs.pipe_file(self._p(rel), data, mode="create")   # If-None-Match: *

    def update(self, rel: str, fn: Callable[[bytes | None], bytes]) -> bytes:
        for attempt in range(CAS_ATTEMPTS):
            with self._io(f"read {rel}"):
                try:
                    with self.fs.open(self._p(rel), "rb") as f:
                        current, etag = f.read(), f.details.get("ETag")
                except FileNotFoundError:
                    current, etag = None, None
            new = fn(current)
            try:
                with self._io(f"write {rel}"):
                    try:
                        if etag is None:
                            self.fs.pipe_file(self._p(rel), new, mode="create")
                        else:
                            self.fs.pipe_file(self._p(rel), new, IfMatch=etag)
                    except FileExistsError:
                        raise CASConflict() from None
                    except OSError as exc:
                        if _precondition_failed(exc):
                            raise CASConflict() from None
                        raise
                return new
            except CASConflict:
                time.sleep(random.uniform(0.01, 0.05) * (1 + attempt))
        raise StoreError(f"{self.url}: {rel} kept changing under {CAS_ATTEMPTS} compare-and-swap attempts; retry")


def _precondition_failed(exc: OSError) -> bool:
    cause = exc.__cause__
    code = getattr(cause, "response", {}).get("Error", {}).get("Code") if cause is not None else None
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or exc.errno == errno.EINVAL and \
        "pre-condition" in str(exc)


class HTTPBackend(Backend):
    read_only = True
    supports_listing = False

    def __init__(self, url: str, **storage_options: Any):
        import fsspec
        opts = {"skip_instance_cache": True, **storage_options}
        super().__init__(fsspec.filesystem("http", **opts), url.rstrip("/"), url.rstrip("/"))

    def open(self, rel: str) -> IO[bytes]:
        with self._io(f"open {rel}"):
            return self.fs.open(self._p(rel), "rb", block_size=1 << 20)

    def listdir(self, rel: str) -> list[str]:
        raise StoreError(f"{self.url}: http stores cannot be listed; run fsck/repair on the served directory")

    def create(self, rel: str, data: bytes) -> None:
        self._writable()

    def update(self, rel: str, fn: Callable[[bytes | None], bytes]) -> bytes:
        self._writable()
        raise AssertionError  # unreachable


def open_backend(url: str | Path, **storage_options: Any) -> Backend:
    """`s3://bucket/prefix`, `http(s)://host/path`, `file:///path` or a plain directory path."""
    text = str(url)
    if text.startswith("s3://"):
        return S3Backend(text, **storage_options)
    if text.startswith(("http://", "https://")):
        return HTTPBackend(text, **storage_options)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if "://" in text:
        raise StoreError(f"unsupported store URL {text!r}: use a directory, file://, s3:// or http(s)://")
    return LocalBackend(text)
