"""Trust by default: the store's policy refuses unsigned, unvalidated or foreign-signed publishes;
pull and verify trust only the user's keys; repair never re-blesses a tampered version."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from artifacts import (NotFoundError, Policy, PolicyError, SignatureError, Store, UntrustedSignerError, trust,
                       verify_dir)
from meshport.cli import main

MODEL = "attention_mesh"


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def untrusting(tmp_path, monkeypatch):
    """An empty trust directory: a user who trusts no key yet."""
    d = tmp_path / "empty-trust"
    monkeypatch.setenv(trust.TRUST_ENV, str(d))
    return d


def _no_parity(build_dir, tmp_path):
    b = tmp_path / "noparity"
    shutil.copytree(build_dir, b)
    (b / MODEL / "parity.json").unlink()
    return b


def test_default_policy_refuses_unsigned_and_unvalidated(build_dir, keys, tmp_path):
    root = tmp_path / "s"
    s = Store(root)
    assert not s.policy().declared and s.policy().require_signature and s.policy().require_validation
    with pytest.raises(PolicyError, match="requires signed.*--allow-unsigned"):
        s.publish(MODEL, build_dir, "1.0.0", formats=["onnx"])
    with pytest.raises(PolicyError, match="no parity report.*--allow-unvalidated"):
        s.publish(MODEL, _no_parity(build_dir, tmp_path), "1.0.0", formats=["onnx"], key=keys[0])
    assert not root.exists() or sorted(p.name for p in root.iterdir()) == []     # a refused publish writes nothing
    # a failed parity report is not a passing one either
    b = tmp_path / "failed"
    shutil.copytree(build_dir, b)
    parity = json.loads((b / MODEL / "parity.json").read_text())
    parity["edges"][0]["passed"] = parity["passed"] = False
    (b / MODEL / "parity.json").write_text(json.dumps(parity))
    with pytest.raises(PolicyError, match="did not pass"):
        s.publish(MODEL, b, "1.0.0", formats=["onnx"], key=keys[0], allow_failed_parity=True)
    # signed and validated: accepted
    assert s.publish(MODEL, build_dir, "1.0.0", formats=["onnx"], key=keys[0]).signed_by == trust.public_key_id(keys[1])


def test_policy_allowances(build_dir, keys, tmp_path, capsys):
    root = tmp_path / "s"
    rc, out, _ = run(capsys, "store", "init", "--allow-unsigned", "--allow-unvalidated", "--store", root, "--json")
    assert rc == 0 and json.loads(out) == {"schema": "meshport.policy/1", "require_signature": False,
                                           "require_validation": False, "signers": [], "declared": True}
    s = Store(root)
    assert s.publish(MODEL, build_dir, "1.0.0", formats=["onnx"]).signed_by is None
    assert s.publish(MODEL, _no_parity(build_dir, tmp_path), "1.1.0", formats=["onnx"], key=keys[0]).signed_by
    rc, out, _ = run(capsys, "store", "policy", "--store", root)
    assert rc == 0 and "signature optional" in out and "parity optional" in out
    # only one allowance: the other rule still holds
    rc, _, _ = run(capsys, "store", "init", "--allow-unsigned", "--store", root)
    with pytest.raises(PolicyError, match="validated"):
        s.publish(MODEL, _no_parity(build_dir, tmp_path / "2"), "1.2.0", formats=["onnx"])


def test_signer_list(build_dir, keys, other_keys, tmp_path, capsys):
    root = tmp_path / "s"
    rc, _, _ = run(capsys, "store", "init", "--signer", keys[1], "--store", root)
    assert rc == 0 and Store(root).policy().signers == [trust.public_key_id(keys[1])]
    rc, _, err = run(capsys, "publish", MODEL, "--build", build_dir, "--version", "1.0.0", "--formats", "onnx",
                     "--key", other_keys[0], "--store", root, "-q")
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "may not sign" in err
    assert not (root / MODEL).exists()
    rc, _, _ = run(capsys, "publish", MODEL, "--build", build_dir, "--version", "1.0.0", "--formats", "onnx",
                   "--key", keys[0], "--store", root, "-q")
    assert rc == 0


def test_keyless_pull_needs_a_trusted_signer(published, served, keys, tmp_path, untrusting):
    for url in (published, served):
        out = tmp_path / f"out-{len(str(url))}"
        with pytest.raises(UntrustedSignerError, match="not trusted"):
            Store(url).pull(f"{MODEL}@1.0.0", out, format="onnx")
        assert not out.exists()
        with pytest.raises(UntrustedSignerError):
            verify_dir(_insecure_pull(url, tmp_path))
    trust.add(keys[1])
    for url in (published, served):
        res = Store(url).pull(f"{MODEL}@1.0.0", tmp_path / "ok", format="onnx")
        assert res.signature == trust.public_key_id(keys[1])
    assert verify_dir(tmp_path / "ok").signature == res.signature


def _insecure_pull(url, tmp_path):
    d = tmp_path / "insecure"
    Store(url).pull(f"{MODEL}@1.0.0", d, format="onnx", insecure=True)
    return d


def test_trust_cli(keys, tmp_path, capsys, untrusting):
    kid = trust.public_key_id(keys[1])
    rc, out, _ = run(capsys, "trust", "ls")
    assert rc == 0 and "no trusted keys" in out
    rc, out, _ = run(capsys, "trust", "add", keys[1])
    assert rc == 0 and kid in out and (untrusting / f"{kid}.pub.pem").is_file()
    rc, out, _ = run(capsys, "trust", "ls", "--json")
    assert list(json.loads(out)["keys"]) == [kid]
    rc, _, _ = run(capsys, "trust", "rm", kid)
    assert rc == 0 and trust.keys() == {}
    rc, _, err = run(capsys, "trust", "rm", kid)
    assert rc != 0 and "not trusted" in err


def test_insecure_pull_warns_and_marks_the_dir(published, tmp_path, capsys, untrusting):
    rc, _, err = run(capsys, "pull", f"{MODEL}@1.0.0", "--format", "onnx", "-o", tmp_path / "x", "--store", published)
    assert rc != 0 and "not trusted" in err and not (tmp_path / "x").exists()
    rc, out, err = run(capsys, "pull", f"{MODEL}@1.0.0", "--format", "onnx", "-o", tmp_path / "x", "--store",
                       published, "--insecure", "-q")
    assert rc == 0 and "WARNING: --insecure" in err and "NOT checked" in out
    assert (tmp_path / "x" / "UNVERIFIED").is_file() and (tmp_path / "x" / "attention_mesh.onnx").is_file()
    rc, _, err = run(capsys, "verify", "--dir", tmp_path / "x", "-q")      # not reported as trusted
    assert rc != 0 and "not trusted" in err
    rc, out, err = run(capsys, "verify", "--dir", tmp_path / "x", "-q", "--insecure")
    assert rc == 0 and "signature NOT verified" in out and "WARNING" in err


def test_tampered_version_is_refused_and_not_reblessed(store_copy, keys, tmp_path):
    vdir = store_copy / MODEL / "1.1.0"
    onnx = vdir / "attention_mesh.onnx"
    data = bytearray(onnx.read_bytes())
    data[100] ^= 0xFF
    onnx.write_bytes(bytes(data))
    man = json.loads((vdir / "manifest.json").read_text())
    for r in man["files"]:
        if r["path"] == "attention_mesh.onnx":
            r["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    raw = (json.dumps(man, indent=2, sort_keys=True) + "\n").encode()
    (vdir / "manifest.json").write_bytes(raw)
    idx = json.loads((store_copy / "index.json").read_text())
    idx["models"][MODEL]["versions"]["1.1.0"]["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    (store_copy / "index.json").write_text(json.dumps(idx))
    s = Store(store_copy)
    with pytest.raises(SignatureError, match="modified after signing"):
        s.pull(f"{MODEL}@1.1.0", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    rep = s.repair()
    assert rep["versions"] == [f"{MODEL}@1.0.0"] and rep["quarantined"] == [f"{MODEL}@1.1.0"]
    assert any("1.1.0 left out" in p for p in rep["problems"])
    assert [v["version"] for v in s.list_versions(MODEL)] == ["1.0.0"]
    # a file changed under an intact, signed manifest is left out too
    card = store_copy / MODEL / "1.0.0" / "MODEL_CARD.md"
    card.write_text(card.read_text() + "tampered\n")
    rep = s.repair()
    assert rep["versions"] == [] and f"{MODEL}@1.0.0" in rep["quarantined"]
    with pytest.raises(NotFoundError):
        s.pull(f"{MODEL}@1.0.0", tmp_path / "out")


def test_policy_over_s3(s3, build_dir, keys, other_keys, tmp_path):
    endpoint, bucket = s3
    s = Store(f"s3://{bucket}/policy", endpoint_url=endpoint)
    with pytest.raises(PolicyError, match="requires signed"):
        s.publish(MODEL, build_dir, "1.0.0", formats=["onnx"])
    assert not s.backend.exists(f"{MODEL}/1.0.0/.claim.json")
    s.set_policy(Policy(signers=[trust.public_key_id(keys[1])]))
    with pytest.raises(PolicyError, match="may not sign"):
        s.publish(MODEL, build_dir, "1.0.0", formats=["onnx"], key=other_keys[0])
    s.publish(MODEL, build_dir, "1.0.0", formats=["onnx"], key=keys[0])
    assert Store(f"s3://{bucket}/policy", endpoint_url=endpoint).policy().signers == [trust.public_key_id(keys[1])]
    assert s.pull(f"{MODEL}@1.0.0", tmp_path / "o").signature                 # the autouse trust dir holds keys[1]


def test_policy_reads_over_http(served, capsys):
    rc, out, _ = run(capsys, "store", "policy", "--store", served)
    assert rc == 0 and "no policy.json" in out and "signature required" in out
