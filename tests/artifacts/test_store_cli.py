"""The store commands of the CLI: --help, one-line errors with a non-zero exit, --json."""
from __future__ import annotations

import json
import os
import stat

import pytest

from meshport.cli import build_parser, main
from meshport.store_cli import add_store_commands

MODEL = "attention_mesh"
COMMANDS = [["publish"], ["pull"], ["ls"], ["serve"], ["keygen"], ["verify"], ["store"], ["store", "fsck"],
            ["store", "repair"], ["store", "alias"]]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("meshport: error: ") and needle in lines[0], err


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd + ["--help"])
    assert e.value.code == 0 and "usage: meshport" in capsys.readouterr().out


def test_add_store_commands_plugs_into_a_parser():
    import argparse
    p = argparse.ArgumentParser(prog="meshport")
    sub = p.add_subparsers(dest="command", required=True)
    add_store_commands(sub)
    args = p.parse_args(["pull", "m@1.0.0", "-o", "x", "--store", "s3://b/p", "--s3-endpoint", "http://127.0.0.1:1"])
    assert callable(args.func) and args.format is None and args.s3_endpoint == "http://127.0.0.1:1"
    assert build_parser().parse_args(["store", "fsck"]).func.__name__ == "_cmd_fsck"


def test_keygen(tmp_path, capsys):
    rc, out, _ = run(capsys, "keygen", "-o", tmp_path / "k", "--json")
    keys = json.loads(out)
    assert rc == 0 and stat.S_IMODE(os.stat(keys["private_key"]).st_mode) == 0o600
    assert "BEGIN PUBLIC KEY" in open(keys["public_key"]).read()
    rc, _, err = run(capsys, "keygen", "-o", tmp_path / "k")
    one_line_error(rc, err, "refusing to overwrite")


def test_publish_ls_pull_verify_alias(build_dir, keys, tmp_path, capsys, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("MESHPORT_STORE", str(store))            # the default store
    rc, out, _ = run(capsys, "publish", MODEL, "--build", build_dir, "--version", "1.0.0", "--key", keys[0],
                     "--formats", "onnx", "--alias", "stable", "--json")
    assert rc == 0 and json.loads(out)["signed_by"]
    rc, _, err = run(capsys, "publish", MODEL, "--build", build_dir, "--version", "1.1.0", "--formats", "onnx", "-q")
    one_line_error(rc, err, "requires signed versions")                      # the default store policy
    assert not (store / MODEL / "1.1.0").exists()
    rc, out, _ = run(capsys, "publish", MODEL, "--build", build_dir, "--version", "1.1.0", "--formats", "onnx", "-q",
                     "--key", keys[0])
    assert rc == 0 and "signed by key" in out
    rc, out, _ = run(capsys, "ls")
    assert rc == 0 and out.splitlines()[0] == f"store: {store}" and "latest→1.1.0" in out
    rc, out, _ = run(capsys, "ls", "--json")
    assert json.loads(out)["models"][0]["aliases"] == {"latest": "1.1.0", "stable": "1.0.0"}
    rc, out, _ = run(capsys, "ls", MODEL, "--json")
    assert [v["version"] for v in json.loads(out)["versions"]] == ["1.0.0", "1.1.0"]
    rc, out, _ = run(capsys, "pull", f"{MODEL}@stable", "--format", "onnx", "--precision", "fp32", "-o",
                     tmp_path / "out", "--public-key", keys[1], "--json")
    assert rc == 0 and json.loads(out)["signature_verified_key_id"] and (tmp_path / "out" / "attention_mesh.onnx").is_file()
    rc, out, _ = run(capsys, "verify", f"{MODEL}@1.0.0", "--json", "--public-key", keys[1])
    assert rc == 0 and json.loads(out)["passed"]
    rc, out, _ = run(capsys, "verify", "--dir", tmp_path / "out", "-q")
    assert rc == 0 and "reproduce their published outputs" in out
    rc, out, _ = run(capsys, "store", "alias", MODEL, "stable", "1.1.0", "--json")
    assert rc == 0 and json.loads(out)["version"] == "1.1.0"
    rc, out, _ = run(capsys, "store", "fsck", "--deep", "--json")
    assert rc == 0 and json.loads(out)["ok"]
    # bad input: one line, non-zero
    cases = [
        (["publish", MODEL, "--build", build_dir, "--version", "1.0.0", "--formats", "onnx", "--key", keys[0]], "already published"),
        (["publish", MODEL, "--build", build_dir, "--version", "v1", "--key", keys[0]], "invalid version"),
        (["publish", "../x", "--build", build_dir, "--version", "1.0.0", "--key", keys[0]], "invalid model name"),
        (["publish", MODEL, "--build", tmp_path / "none", "--version", "2.0.0", "--key", keys[0]], "no build record"),
        (["publish", MODEL, "--build", build_dir, "--version", "2.0.0", "--key", tmp_path / "no.pem"], "does not exist"),
        (["publish", MODEL, "--build", build_dir, "--version", "2.0.0", "--alias", "latest", "--key", keys[0]], "latest"),
        (["pull", f"{MODEL}@9.9.9", "-o", tmp_path / "x"], "not published"),
        (["pull", f"{MODEL}@^1", "--format", "tflite", "-o", tmp_path / "x"], "has no tflite"),
        (["pull", "nope@1.0.0", "-o", tmp_path / "x"], "not in the store"),
        (["pull", f"{MODEL}@1.0.0", "-o", tmp_path / "x", "--public-key", tmp_path / "missing.pem"], "missing.pem"),
        (["pull", f"{MODEL}@>=1", "-o", tmp_path / "x"], "invalid version spec"),
        (["ls", "nope"], "not in the store"),
        (["ls", "--store", "ftp://host/x"], "unsupported store URL"),
        (["ls", "--store", str(store), "--s3-endpoint", "http://127.0.0.1:9"], "s3:// stores only"),
        (["serve", "--store", tmp_path / "none", "--port", "0"], "does not exist"),
        (["verify"], "MODEL@SPEC"),
        (["verify", "--dir", tmp_path / "none"], "not found"),
        (["store", "alias", MODEL, "Bad!", "1.0.0"], "invalid alias"),
        (["store", "alias", MODEL, "stable", "7.0.0"], "not published"),
        (["store", "repair", "--store", "http://127.0.0.1:9/x"], "read-only"),
    ]
    for argv, needle in cases:
        rc, _, err = run(capsys, *argv)
        one_line_error(rc, err, needle)
    assert not (tmp_path / "x").exists()


def test_unreachable_and_corrupt_stores(tmp_path, capsys, store_copy):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                                  # nothing listens there now
    rc, _, err = run(capsys, "ls", "--store", f"http://127.0.0.1:{port}/store")
    one_line_error(rc, err, f"127.0.0.1:{port}")
    (store_copy / "index.json").write_text("{not json")
    rc, _, err = run(capsys, "ls", "--store", store_copy)
    one_line_error(rc, err, "store repair")
    rc, out, err = run(capsys, "store", "fsck", "--store", store_copy, "--json")
    assert rc != 0 and not json.loads(out)["ok"] and err.count("\n") == 1
    rc, out, _ = run(capsys, "store", "repair", "--store", store_copy, "--json")
    assert rc == 0 and len(json.loads(out)["versions"]) == 2
    rc, out, _ = run(capsys, "ls", MODEL, "--store", store_copy, "--json")
    assert rc == 0 and [v["version"] for v in json.loads(out)["versions"]] == ["1.0.0", "1.1.0"]
