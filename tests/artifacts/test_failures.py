"""What must fail, fails clearly: truncation, signatures, immutability, concurrency, unsafe names,
corrupt indexes and crashes mid-publish."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtime.record import BuildRecordError
from artifacts import (CorruptIndexError, IntegrityError, InvalidNameError, NotFoundError, PublishError,
                       PublishInProgressError, SignatureError, Store, VersionExistsError, release_publish)
from artifacts.server import serve_in_thread
from artifacts.signing import sign
from artifacts.policy import Policy

MODEL = "attention_mesh"
REPO = Path(__file__).resolve().parents[2]


def test_truncated_download_over_http(store_copy, tmp_path):
    """The served file is shorter than the manifest says: a truncated download, nothing written."""
    onnx = store_copy / MODEL / "1.1.0" / "attention_mesh.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1000])
    server, url = serve_in_thread(store_copy)
    try:
        with pytest.raises(IntegrityError, match="truncated"):
            Store(url).pull(f"{MODEL}@1.1.0", tmp_path / "out")
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "out").exists()


def test_connection_dropped_mid_body(tmp_path, published):
    """A server that promises N bytes and closes early: IntegrityError, nothing left behind."""
    import socket
    index = (published / "index.json").read_bytes()
    manifest = (published / MODEL / "1.1.0" / "manifest.json").read_bytes()
    man = json.loads(manifest)
    onnx_row = next(r for r in man["files"] if r["path"] == "attention_mesh.onnx")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(30)
    port = sock.getsockname()[1]
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                req += chunk
            method, path = req.split(b" ")[:2]
            body = {b"/index.json": index, f"/{MODEL}/1.1.0/manifest.json".encode(): manifest}.get(path)
            if body is None and path.endswith(b"attention_mesh.onnx"):
                head = (f"HTTP/1.1 200 OK\r\nContent-Length: {onnx_row['bytes']}\r\n"
                        "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n").encode()
                conn.sendall(head + (b"" if method == b"HEAD" else b"\0" * 4096))   # then hang up
                return
            if body is None:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + (b"" if method == b"HEAD" else body))

    def loop() -> None:
        for _ in range(200):                       # bounded
            if stop.is_set():
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            handle(conn)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        with pytest.raises(IntegrityError, match="download of .*attention_mesh.onnx failed"):
            Store(f"http://127.0.0.1:{port}").pull(f"{MODEL}@1.1.0", tmp_path / "out", format="onnx")
    finally:
        stop.set()
        sock.close()
    assert not (tmp_path / "out").exists()


def test_signature_errors(published, keys, other_keys, build_dir, tmp_path, store_copy, monkeypatch):
    store = Store(published)
    monkeypatch.setenv("MESHPORT_TRUST_DIR", str(tmp_path / "no-trust"))   # the signer is not trusted
    with pytest.raises(SignatureError, match="not trusted"):
        store.pull(f"{MODEL}@1.0.0", tmp_path / "a", format="onnx", public_key=other_keys[1])
    assert not (tmp_path / "a").exists()
    with pytest.raises(SignatureError, match="not a PEM public key"):
        store.pull(f"{MODEL}@1.0.0", tmp_path / "b", format="onnx", public_key=_garbage(tmp_path))
    # A store whose manifest was rewritten (here: to bless a tampered file) with the index updated to
    # match: checksums agree, the signature does not.
    vdir = store_copy / MODEL / "1.1.0"
    onnx = vdir / "attention_mesh.onnx"
    data = bytearray(onnx.read_bytes())
    data[100] ^= 0xFF
    onnx.write_bytes(bytes(data))
    man = json.loads((vdir / "manifest.json").read_text())
    for r in man["files"]:
        if r["path"] == "attention_mesh.onnx":
            r["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    _rewrite_manifest(store_copy, "1.1.0", man)
    with pytest.raises(SignatureError, match="modified after signing"):
        Store(store_copy).pull(f"{MODEL}@1.1.0", tmp_path / "c", public_key=keys[1])
    assert not (tmp_path / "c").exists()
    # re-signed with another key: not a trusted signer
    _rewrite_manifest(store_copy, "1.1.0", sign(man, other_keys[0]))
    with pytest.raises(SignatureError, match="signed by key .* not trusted"):
        Store(store_copy).pull(f"{MODEL}@1.1.0", tmp_path / "d", public_key=keys[1])
    # an unsigned version cannot pass a signature check
    s = Store(tmp_path / "unsigned")
    s.set_policy(Policy(require_signature=False))
    s.publish(MODEL, build_dir, "0.1.0", formats=["onnx"])
    with pytest.raises(SignatureError, match="unsigned"):
        s.pull(f"{MODEL}@0.1.0", tmp_path / "e", public_key=keys[1])


def _garbage(tmp_path: Path) -> Path:
    p = tmp_path / "garbage.pem"
    p.write_text("not a key")
    return p


def _rewrite_manifest(root: Path, version: str, man: dict) -> None:
    raw = (json.dumps(man, indent=2, sort_keys=True) + "\n").encode()
    (root / MODEL / version / "manifest.json").write_bytes(raw)
    idx = json.loads((root / "index.json").read_text())
    idx["models"][MODEL]["versions"][version]["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    (root / "index.json").write_text(json.dumps(idx))


def test_republish_is_refused(store_copy, build_dir, keys):
    with pytest.raises(VersionExistsError, match="already published"):
        Store(store_copy).publish(MODEL, build_dir, "1.0.0", formats=["onnx"], key=keys[0])


def test_concurrent_publishes_of_one_version(build_dir, tmp_path, keys):
    """Threads race for 3.0.0: exactly one wins; the rest get VersionExistsError; the store is valid."""
    store_url = tmp_path / "store"
    barrier = threading.Barrier(4)
    results: list[object] = []

    def go() -> None:
        s = Store(store_url)
        barrier.wait(timeout=60)
        try:
            results.append(s.publish(MODEL, build_dir, "3.0.0", formats=["onnx"], key=keys[0]))
        except VersionExistsError as exc:        # PublishInProgressError is a VersionExistsError
            results.append(exc)
    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(results) == 4 and len(wins) == 1, results
    store = Store(store_url)
    assert [r["version"] for r in store.list_versions(MODEL)] == ["3.0.0"]
    assert store.fsck(deep=True).ok


def test_concurrent_publishes_of_different_versions_keep_every_version(build_dir, tmp_path, keys):
    store_url = tmp_path / "store"
    errors: list[Exception] = []

    def go(v: str) -> None:
        try:
            Store(store_url).publish(MODEL, build_dir, v, formats=["onnx"], aliases=["stable"], key=keys[0])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=go, args=(f"1.{i}.0",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    store = Store(store_url)
    assert [r["version"] for r in store.list_versions(MODEL)] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    assert store.resolve(MODEL, "latest") == "1.3.0" and store.fsck().ok


@pytest.mark.parametrize("bad", ["../etc", "a/b", "/abs", "..", "Attention", "a\\b", ""])
def test_unsafe_model_names_are_rejected(bad, published, build_dir, tmp_path):
    with pytest.raises(InvalidNameError):
        Store(tmp_path / "s").publish(bad, build_dir, "1.0.0")
    with pytest.raises(InvalidNameError):
        Store(published).pull(f"{bad}@1.0.0", tmp_path / "out")
    assert not (tmp_path / "s").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["../1.0.0", "1.0", "1.0.0/..", "/1.0.0", "01.0.0", "1.0.0+build"])
def test_unsafe_versions_are_rejected(bad, build_dir, tmp_path):
    with pytest.raises(InvalidNameError):
        Store(tmp_path / "s").publish(MODEL, build_dir, bad)


def test_manifest_paths_cannot_escape(store_copy, tmp_path, keys):
    vdir = store_copy / MODEL / "1.1.0"
    man = json.loads((vdir / "manifest.json").read_text())
    man["files"][0]["path"] = "../../escape.onnx"
    _rewrite_manifest(store_copy, "1.1.0", sign(man, keys[0]))    # even a trusted signer cannot escape
    with pytest.raises(InvalidNameError):
        Store(store_copy).pull(f"{MODEL}@1.1.0", tmp_path / "out")
    assert not (tmp_path / "escape.onnx").exists() and not (tmp_path / "out").exists()


def test_corrupt_index_then_repair(store_copy, tmp_path, keys):
    (store_copy / "index.json").write_text('{"schema": "meshport.index/1", "models": {"attention_mesh": ')
    store = Store(store_copy)
    with pytest.raises(CorruptIndexError, match="store repair"):
        store.list_models()
    with pytest.raises(CorruptIndexError):
        store.pull(f"{MODEL}@latest", tmp_path / "out")
    with pytest.raises(CorruptIndexError):
        store.publish(MODEL, tmp_path, "9.0.0", key=keys[0])          # refused before anything is read or written
    assert not store.fsck().ok
    rep = store.repair()
    assert rep["versions"] == [f"{MODEL}@1.0.0", f"{MODEL}@1.1.0"] and rep["index_was_corrupt"]
    assert store.resolve(MODEL, "stable") == "1.0.0"      # recovered from the manifest's publish-time aliases
    assert store.resolve(MODEL, "latest") == "1.1.0"
    assert store.fsck(deep=True).ok
    assert store.pull(f"{MODEL}@stable", tmp_path / "out", format="onnx").version == "1.0.0"


def test_crash_mid_publish_leaves_no_visible_version(build_dir, tmp_path, keys):
    """A publisher killed (os._exit) after uploading the files but before the manifest."""
    store_dir = tmp_path / "store"
    Store(store_dir).publish(MODEL, build_dir, "1.0.0", formats=["onnx"], key=keys[0])
    script = (f"import os\nfrom artifacts import Store\n"
              f"Store({str(store_dir)!r}).publish({MODEL!r}, {str(build_dir)!r}, '1.1.0', formats=['onnx'], key={str(keys[0])!r}, "
              f"progress=lambda m: os._exit(9) if m.startswith('write manifest') else None)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert (store_dir / MODEL / "1.1.0" / "attention_mesh.onnx").is_file()    # files landed; no manifest
    store = Store(store_dir)
    assert [r["version"] for r in store.list_versions(MODEL)] == ["1.0.0"]
    assert store.resolve(MODEL, "latest") == "1.0.0"
    with pytest.raises(NotFoundError):
        store.pull(f"{MODEL}@1.1.0", tmp_path / "out")
    rep = store.fsck()
    assert any("incomplete publish" in p for p in rep.problems)
    with pytest.raises(PublishInProgressError, match="store repair"):
        store.publish(MODEL, build_dir, "1.1.0", formats=["onnx"], key=keys[0])
    assert store.repair(stale_after=3600)["removed_incomplete"] == []          # a young claim may be live
    assert store.repair(stale_after=0)["removed_incomplete"] == [f"{MODEL}@1.1.0"]
    store.publish(MODEL, build_dir, "1.1.0", formats=["onnx"], key=keys[0])
    assert store.resolve(MODEL, "latest") == "1.1.0" and store.fsck(deep=True).ok


def test_failed_publish_cleans_up(build_dir, tmp_path, keys):
    """An exception mid-upload (here raised from the progress hook) removes what was written."""
    store = Store(tmp_path / "store")

    def boom(msg: str) -> None:
        if msg.startswith("upload selftest"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        store.publish(MODEL, build_dir, "1.0.0", formats=["onnx"], progress=boom, key=keys[0])
    assert not (tmp_path / "store" / MODEL / "1.0.0").exists()
    store.publish(MODEL, build_dir, "1.0.0", formats=["onnx"], key=keys[0])
    assert store.fsck(deep=True).ok


def test_publish_refuses_bad_builds(build_dir, tmp_path, keys):
    import shutil
    b = tmp_path / "b"
    shutil.copytree(build_dir, b)
    root = b / MODEL
    (root / "parity.json").unlink()
    with pytest.raises(PublishError, match="no parity report"):
        release_publish(MODEL, b, "1.0.0", tmp_path / "s", key=keys[0])
    parity = json.loads((build_dir / MODEL / "parity.json").read_text())
    parity["edges"][0]["passed"] = parity["passed"] = False
    (root / "parity.json").write_text(json.dumps(parity))
    with pytest.raises(PublishError, match="parity failed"):
        release_publish(MODEL, b, "1.0.0", tmp_path / "s", key=keys[0])
    (root / "parity.json").unlink()
    with (root / "attention_mesh.onnx").open("r+b") as f:
        f.seek(10)
        f.write(b"\xff")
    with pytest.raises(IntegrityError, match="changed since it was built"):
        Store(tmp_path / "s").publish(MODEL, b, "1.0.0", formats=["onnx"], key=keys[0])
    with pytest.raises(BuildRecordError, match="no build record"):
        Store(tmp_path / "s").publish(MODEL, tmp_path / "nowhere", "1.0.0", key=keys[0])
    assert not (tmp_path / "s" / MODEL).exists()


def test_http_store_is_read_only(served, build_dir):
    from artifacts import ReadOnlyStoreError
    with pytest.raises(ReadOnlyStoreError):
        Store(served).publish(MODEL, build_dir, "9.9.9")
    with pytest.raises(ReadOnlyStoreError):
        Store(served).repair()
