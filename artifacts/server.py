"""`meshport serve`: a read-only HTTP server for a local store directory (GET/HEAD, single byte
ranges, content types, ETags). Dotfiles (claims, temp files, the lock) are never served."""
from __future__ import annotations

import email.utils
import hashlib
import mimetypes
import re
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from runtime.errors import MissingFileError

from .errors import StoreError

TYPES = {".json": "application/json", ".md": "text/markdown; charset=utf-8", ".onnx": "application/octet-stream",
         ".tflite": "application/octet-stream", ".npz": "application/octet-stream", ".bin": "application/octet-stream",
         ".mlmodel": "application/octet-stream", ".html": "text/html; charset=utf-8"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 1 << 16


class StoreRequestHandler(BaseHTTPRequestHandler):
    server_version = "meshport-store/1"
    root: Path
    quiet = False

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "the store is served read-only")

    do_PUT = do_POST = do_DELETE = do_PATCH = _refuse

    def end_headers(self) -> None:
        self.send_header("Allow", "GET, HEAD")
        super().end_headers()

    def _resolve(self) -> Path | None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        target = self.root.joinpath(*parts) if parts else self.root
        try:
            target.resolve().relative_to(self.root.resolve())
        except ValueError:
            return None
        return target if target.is_file() else None

    def _serve(self, body: bool) -> None:
        target = self._resolve()
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND, "no such file in the store")
            return
        st = target.stat()
        size = st.st_size
        etag = '"' + hashlib.sha256(f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:32] + '"'
        start, end, status = 0, size - 1, HTTPStatus.OK
        rng = self.headers.get("Range")
        if rng and self.headers.get("If-Range") not in (None, etag):
            rng = None                                    # the file changed: send all of it
        if rng:
            m = _RANGE.match(rng.strip())
            if m and (m.group(1) or m.group(2)):          # one range; multi-range requests get the whole file
                a, b = m.group(1), m.group(2)
                if a:
                    start, end = int(a), min(int(b), size - 1) if b else size - 1
                else:
                    start, end = max(size - int(b), 0), size - 1
                if start >= size or start > end:
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = HTTPStatus.PARTIAL_CONTENT
        length = max(end - start + 1, 0)
        self.send_response(status)
        ctype = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        # Versions are immutable; the index and aliases are not.
        self.send_header("Cache-Control", "no-cache" if target.name == "index.json" and target.parent == self.root
                         else "public, max-age=31536000, immutable")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body or length == 0:
            return
        with open(target, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                left -= len(chunk)

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(store_dir: Path | str, host: str = "127.0.0.1", port: int = 0, quiet: bool = False) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; `port=0` picks a free port (see `server.server_address`)."""
    text = str(store_dir)
    if "://" in text and not text.startswith("file://"):
        raise StoreError(f"serve needs a local store directory, not {text}")
    root = Path(text.removeprefix("file://")).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"store directory {root} does not exist")
    handler = type("Handler", (StoreRequestHandler,), {"root": root.absolute(), "quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(store_dir: Path | str, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving in a daemon thread; returns the server (call `.shutdown()`) and its base URL."""
    server = make_server(store_dir, host, port, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    h, p = server.server_address[:2]
    return server, f"http://{h}:{p}"
