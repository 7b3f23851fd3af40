"""`meshport serve`: read-only, byte ranges, content types, no dotfiles, no traversal."""
from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest

MODEL = "attention_mesh"


def _req(url: str, path: str, method: str = "GET", headers: dict | None = None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_serves_files_with_types_and_ranges(served, published):
    onnx_path = f"/{MODEL}/1.0.0/attention_mesh.onnx"
    data = (published / onnx_path.lstrip("/")).read_bytes()
    status, h, body = _req(served, onnx_path)
    assert status == 200 and body == data
    assert h["Content-Type"] == "application/octet-stream" and h["Accept-Ranges"] == "bytes"
    assert "immutable" in h["Cache-Control"] and h["ETag"]
    status, h, body = _req(served, onnx_path, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200] and h["Content-Range"] == f"bytes 100-199/{len(data)}"
    status, h, body = _req(served, onnx_path, headers={"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    status, h, body = _req(served, onnx_path, headers={"Range": f"bytes={len(data) - 5}-"})
    assert status == 206 and body == data[-5:]
    status, h, _ = _req(served, onnx_path, headers={"Range": f"bytes={len(data)}-"})
    assert status == 416 and h["Content-Range"] == f"bytes */{len(data)}"
    status, h, body = _req(served, onnx_path, "HEAD")
    assert status == 200 and body == b"" and int(h["Content-Length"]) == len(data)
    status, h, body = _req(served, "/index.json")
    assert status == 200 and h["Content-Type"] == "application/json" and h["Cache-Control"] == "no-cache"
    assert MODEL in json.loads(body)["models"]
    status, h, _ = _req(served, f"/{MODEL}/1.0.0/MODEL_CARD.md")
    assert status == 200 and h["Content-Type"].startswith("text/markdown")


def test_http_url_without_a_store(served):
    from artifacts import Store, StoreError
    with pytest.raises(StoreError, match="no store at"):
        Store(served + "/attention_mesh").list_models()


def test_read_only_and_confined(served):
    for path in ("/.lock", f"/{MODEL}/1.0.0/.claim.json", "/../etc/passwd", "/%2e%2e/etc/passwd",
                 f"/{MODEL}", "/nope.json"):
        status, _, _ = _req(served, path)
        assert status == 404, path
    for method in ("PUT", "POST", "DELETE"):
        status, h, _ = _req(served, "/index.json", method)
        assert status == 405 and "GET" in h["Allow"]
