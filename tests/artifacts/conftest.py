"""Fixtures for the artifact store: one real build (ONNX + a Core ML .mlpackage directory), a
signing key pair, a published local store, `meshport serve` over loopback and a moto S3 server."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

MODEL = "attention_mesh"
REPO = Path(__file__).resolve().parents[2]


def _evidence(root: Path) -> None:
    """parity.json and latency.json in the DESIGN §4 schemas, numbers taken from the build's own
    quick parity check (validate and bench are other rooms' commands)."""
    import modelzoo
    record = json.loads((root / "build.json").read_text())
    spec = modelzoo.get_spec(MODEL)
    edges, latency = [], []
    for a in record["artifacts"]:
        q = a["quick_parity"]["sample_face"]
        outs = {}
        for name, m in q.items():
            tol = spec.tolerance(a["format"], a["precision"], name)
            o = {"name": name, "max_abs": m["max_abs"], "mean_abs": m["mean_abs"], "p99_abs": m["max_abs"],
                 "max_rel": float("inf") if name == "face_flag" else m["max_abs"], "min_atol": m["max_abs"],
                 "tolerance": {"atol": tol.atol, "max_px": tol.max_px, "mean_iod_pct": tol.mean_iod_pct,
                               "reason": tol.reason}, "passed": True, "failures": [], "landmarks": None}
            if name == "landmarks":
                o["landmarks"] = {"all": {"max_px": m["max_abs"], "mean_px": m["mean_abs"],
                                          "mean_iod_pct": 100 * m["mean_abs"] / 70.0}}
            outs[name] = o
        edges.append({"reference": "pytorch", "candidate": f"{a['path']}@runner", "format": a["format"],
                      "precision": a["precision"], "input_set": "sample_face", "input_kind": "face",
                      "outputs": outs, "passed": True})
        latency.append({"model": MODEL, "artifact": a["path"], "format": a["format"], "precision": a["precision"],
                        "runtime": "onnxruntime" if a["format"] == "onnx" else "mil-reference", "device": "cpu",
                        "threads": 1, "warmup": 3, "runs": 20, "median_ms": 2.5, "p90_ms": 2.9, "min_ms": 2.3,
                        "peak_rss_mb": 310.0, "tool_versions": record["tool_versions"]})
    parity = {"model": MODEL, "spec_sha256": record["spec_sha256"], "tool_versions": record["tool_versions"],
              "inputs": [{"name": "sample_face", "kind": "face"}], "edges": edges, "errors": [], "passed": True}
    (root / "parity.json").write_text(json.dumps(parity))
    (root / "latency.json").write_text(json.dumps({"schema": 1, "model": MODEL, "records": latency, "skipped": [
        {"artifact": "attention_mesh-fp32.mlpackage", "runtime": "coreml", "reason": "Core ML predict needs macOS"}]}))


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    """A real build output dir: attention_mesh.onnx and attention_mesh-fp32.mlpackage + evidence."""
    from converters.build import build
    out = tmp_path_factory.mktemp("build")
    build(MODEL, out, formats=["onnx", "coreml"], precisions=["fp32"])
    _evidence(out / MODEL)
    return out


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    from artifacts import keygen
    return keygen(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory) -> tuple[Path, Path]:
    from artifacts import keygen
    return keygen(tmp_path_factory.mktemp("other_keys"))


@pytest.fixture(autouse=True)
def trusted(tmp_path, monkeypatch, keys) -> Path:
    """Every test gets its own trust directory ($MESHPORT_TRUST_DIR, never the real home) holding the
    public key the `published` store is signed with, as a user who pulls from it would have."""
    from artifacts import trust
    d = tmp_path / "trust"
    monkeypatch.setenv(trust.TRUST_ENV, str(d))
    trust.add(keys[1])
    return d


@pytest.fixture(scope="session")
def published(tmp_path_factory, build_dir, keys) -> Path:
    """A local store holding attention_mesh 1.0.0 (onnx + coreml, signed, alias `stable`) and
    1.1.0 (onnx only, signed). Treat as read-only; copy it to modify."""
    from artifacts import Store
    root = tmp_path_factory.mktemp("store") / "store"
    s = Store(root)
    s.publish(MODEL, build_dir, "1.0.0", key=keys[0], aliases=["stable"])
    s.publish(MODEL, build_dir, "1.1.0", key=keys[0], formats=["onnx"])
    return root


@pytest.fixture
def store_copy(published, tmp_path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(published, dst)
    return dst


@pytest.fixture(scope="session")
def served(published):
    """`meshport serve` (the real CLI command, in its own process) on 127.0.0.1 and a free port."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "meshport", "serve", "--store", str(published),
                             "--port", "0", "--host", "127.0.0.1", "-q"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=90)
    if not line or "http://" not in line[0]:
        proc.kill()
        raise RuntimeError(f"meshport serve did not start: {line} {proc.stderr.read() if proc.poll() is not None else ''}")
    url = line[0].split(" at ", 1)[1].split()[0].rstrip("/")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def s3():
    """A moto S3 server on 127.0.0.1 with dummy credentials; yields (endpoint, bucket)."""
    from moto.server import ThreadedMotoServer
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_SESSION_TOKEN", "AWS_PROFILE")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="meshport-models")
    yield endpoint, "meshport-models"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
