"""Store commands of the `meshport` CLI: publish, pull, ls, serve, keygen, verify, store fsck|repair|alias.
A thin layer over `artifacts`; `meshport.cli` adds them with `add_store_commands(subparsers)`."""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

from runtime.errors import UsageError

from .options import formats, list_of, one_of, precisions


def _store(args: argparse.Namespace):
    from artifacts import Store
    opts = {"endpoint_url": args.s3_endpoint} if getattr(args, "s3_endpoint", None) else {}
    if opts and not str(args.store or "").startswith("s3://"):
        raise UsageError("--s3-endpoint applies to s3:// stores only")
    return Store(args.store, **opts)


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """OS errors of a store command become typed errors: a missing file `MissingFileError`, any
    other a one-line `StoreError` (the CLI prints those)."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from artifacts.errors import StoreError
        from runtime.errors import MeshportError, MissingFileError
        try:
            return fn(args)
        except MeshportError:
            raise
        except FileNotFoundError as exc:
            raise MissingFileError(f"no such file or directory: {exc.filename or exc}") from exc
        except OSError as exc:
            raise StoreError(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")) from exc
    return run


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if getattr(args, "json", False) or getattr(args, "quiet", False):
        return None
    return lambda msg: print(f"  {msg}", file=sys.stderr, flush=True)


@_guarded
def _cmd_publish(args: argparse.Namespace) -> int:
    store = _store(args)
    res = store.publish(args.model, args.build, args.version, key=args.key, aliases=args.alias or [],
                        formats=args.formats, precisions=args.precisions,
                        allow_failed_parity=args.allow_failed_parity, require_parity=args.require_parity,
                        progress=_progress(args))
    if args.json:
        _print_json(res.to_json())
        return 0
    signed = f"signed by key {res.signed_by}" if res.signed_by else "UNSIGNED (pass --key to sign)"
    aliases = f", aliases: {', '.join(res.aliases)}" if res.aliases else ""
    print(f"published {res.model}@{res.version} to {res.url}: {len(res.files)} files, {signed}{aliases}")
    return 0


@_guarded
def _cmd_pull(args: argparse.Namespace) -> int:
    if args.insecure:
        _warn_insecure("pull")
    res = _store(args).pull(args.ref, args.output, format=args.format, precision=args.precision,
                            public_key=args.public_key, insecure=args.insecure, progress=_progress(args))
    if args.json:
        _print_json(res.to_json())
        return 0
    for a in res.artifacts:
        print(f"{Path(args.output) / a['path']}  {a['format']}/{a['precision']}  {a['bytes'] / 1e6:.2f} MB  "
              f"sha256 {a['sha256'][:12]} ok")
    sig = f"signature ok (key {res.signature})" if res.signature else "signature NOT checked (--insecure)"
    print(f"{res.model}@{res.version}: checksums ok, {sig}")
    return 0


@_guarded
def _cmd_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.model:
        rows = store.list_versions(args.model)
        if args.json:
            _print_json({"store": store.url, "model": args.model, "versions": rows})
            return 0
        print(f"store: {store.url}")
        for r in rows:
            arts = ", ".join(f"{a['format']}/{a['precision']}" for a in r["artifacts"])
            tags = f" [{', '.join(r['aliases'])}]" if r["aliases"] else ""
            print(f"{args.model}@{r['version']:<12} {r['published'] or '':<21} "
                  f"{'signed ' + r['signed_by'] if r['signed_by'] else 'unsigned':<24} {arts}{tags}")
        return 0
    rows = store.list_models()
    if args.json:
        _print_json({"store": store.url, "models": rows})
        return 0
    print(f"store: {store.url}")
    if not rows:
        print("(empty)")
    for r in rows:
        aliases = ", ".join(f"{a}→{v}" for a, v in r["aliases"].items())
        print(f"{r['model']:<22} {r['versions']:>3} version(s)  {aliases}")
    return 0


@_guarded
def _cmd_serve(args: argparse.Namespace) -> int:
    from artifacts.server import make_server
    store = args.store or _default()
    server = make_server(store, args.host, args.port, quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"serving {Path(store).expanduser()} read-only at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


@_guarded
def _cmd_keygen(args: argparse.Namespace) -> int:
    from artifacts import keygen
    priv, pub = keygen(args.output, force=args.force)
    if args.json:
        _print_json({"private_key": str(priv), "public_key": str(pub)})
    else:
        print(f"private key: {priv} (mode 0600; keep it secret)\npublic key:  {pub} (give this to app teams)")
    return 0


@_guarded
def _cmd_verify(args: argparse.Namespace) -> int:
    from artifacts import verify_dir
    if bool(args.ref) == bool(args.dir):
        raise UsageError("give MODEL@SPEC (verify from the store) or --dir DIR (verify a pulled directory)")
    if args.insecure:
        _warn_insecure("verify")
    if args.dir:
        res = verify_dir(args.dir, public_key=args.public_key, progress=_progress(args), insecure=args.insecure)
    else:
        res = _store(args).verify(args.ref, format=args.format, precision=args.precision,
                                  public_key=args.public_key, insecure=args.insecure, progress=_progress(args))
    if args.json:
        _print_json(res.to_json())
    else:
        for r in res.results:
            worst = max((o.get("max_abs", 0.0) for o in r.outputs.values()), default=0.0)
            print(f"{r.artifact:<40} {'ok' if r.passed else 'FAILED'}  max abs diff {worst:.3g}")
            for name, o in r.outputs.items():
                if not o["passed"]:
                    print(f"    {name}: {'; '.join(o['failures'])}")
    if not res.passed:
        from artifacts import SelfTestError
        failed = [r.artifact for r in res.results if not r.passed]
        raise SelfTestError(f"self-test failed for {', '.join(failed)} of {res.model}@{res.version}")
    if not args.json:
        trusted = f"signed by trusted key {res.signature}" if res.signature else "signature NOT verified"
        print(f"{res.model}@{res.version}: {len(res.results)} artifact(s) reproduce their published outputs; {trusted}")
    return 0


def _warn_insecure(what: str) -> None:
    print(f"WARNING: --insecure: {what} does not verify the manifest signature; the artifacts may come from anyone",
          file=sys.stderr)


@_guarded
def _cmd_store_init(args: argparse.Namespace) -> int:
    from artifacts import trust
    from artifacts.policy import Policy
    signers = sorted({trust.public_key_id(k) for k in args.signer or []})
    pol = _store(args).set_policy(Policy(require_signature=not args.allow_unsigned,
                                         require_validation=not args.allow_unvalidated, signers=signers))
    return _show_policy(args, pol)


@_guarded
def _cmd_store_policy(args: argparse.Namespace) -> int:
    return _show_policy(args, _store(args).policy())


def _show_policy(args: argparse.Namespace, pol: Any) -> int:
    if args.json:
        _print_json({**pol.to_json(), "declared": pol.declared})
        return 0
    where = "policy.json" if pol.declared else "no policy.json: the default"
    print(f"{args.store or _default()} ({where}): signature {'required' if pol.require_signature else 'optional'}, "
          f"passing parity {'required' if pol.require_validation else 'optional'}, "
          f"signers: {', '.join(pol.signers) or 'any key'}")
    return 0


@_guarded
def _cmd_trust(args: argparse.Namespace) -> int:
    from artifacts import trust
    if args.trust_command == "add":
        kid = trust.add(args.key)
        print(f"trusted key {kid} ({trust.trust_dir()})")
    elif args.trust_command == "rm":
        trust.remove(args.key_id)
        print(f"removed trusted key {args.key_id}")
    else:
        keys = trust.keys()
        if args.json:
            _print_json({"trust_dir": str(trust.trust_dir()), "keys": {k: str(p) for k, p in keys.items()}})
        else:
            for k, p in keys.items():
                print(f"{k}  {p}")
            if not keys:
                print(f"no trusted keys in {trust.trust_dir()}")
    return 0


@_guarded
def _cmd_fsck(args: argparse.Namespace) -> int:
    rep = _store(args).fsck(deep=args.deep)
    if args.json:
        _print_json(rep.to_json())
    else:
        for p in rep.problems:
            print(f"problem: {p}")
        print(f"{rep.url}: {rep.versions_checked} version(s), {rep.files_checked} file(s) checked"
              f"{' (sha256)' if args.deep else ''}: {'ok' if rep.ok else f'{len(rep.problems)} problem(s)'}")
    if not rep.ok:
        from artifacts import StoreError
        raise StoreError(f"{len(rep.problems)} problem(s) in {rep.url}: {rep.problems[0]}")
    return 0


@_guarded
def _cmd_repair(args: argparse.Namespace) -> int:
    rep = _store(args).repair(stale_after=args.stale_after)
    if args.json:
        _print_json(rep)
    else:
        for r in rep["removed_incomplete"]:
            print(f"removed incomplete publish {r}")
        for p in rep["problems"]:
            print(f"problem: {p}")
        print(f"{rep['store']}: index rebuilt with {len(rep['versions'])} version(s)")
    return 0


@_guarded
def _cmd_alias(args: argparse.Namespace) -> int:
    v = _store(args).set_alias(args.model, args.alias, args.spec)
    if args.json:
        _print_json({"model": args.model, "alias": args.alias, "version": v})
    else:
        print(f"{args.model}@{args.alias} → {v}")
    return 0


def _default() -> str:
    from artifacts import default_store_url
    return default_store_url()


def _store_args(p: argparse.ArgumentParser, json_help: str | None = "print JSON") -> None:
    p.add_argument("--store", metavar="URL", default=None,
                   help="store: a directory, s3://bucket/prefix or http(s)://… (default: $MESHPORT_STORE or "
                        "~/.local/share/meshport/store)")
    p.add_argument("--s3-endpoint", metavar="URL", default=None,
                   help="S3-compatible endpoint for s3:// stores (default: $MESHPORT_S3_ENDPOINT or AWS)")
    if json_help:
        p.add_argument("--json", action="store_true", help=json_help)


def add_store_commands(sub: Any) -> None:
    """Add publish, pull, ls, serve, keygen, verify and `store` to the `meshport` subparsers."""
    p = sub.add_parser("publish", help="publish a build as an immutable, signed version in a store")
    p.add_argument("model")
    p.add_argument("--build", required=True, metavar="DIR", help="build output dir holding MODEL/build.json")
    p.add_argument("--version", required=True, metavar="X.Y.Z", help="semantic version to publish")
    p.add_argument("--alias", action="append", metavar="NAME", help="also point this alias at it (repeatable)")
    p.add_argument("--key", type=Path, metavar="PEM", help="Ed25519 private key to sign the manifest (meshport keygen)")
    p.add_argument("--formats", type=list_of("--formats", formats),
                   help="comma-separated formats to publish (default: all built)")
    p.add_argument("--precisions", type=list_of("--precisions", precisions),
                   help="comma-separated precisions to publish (default: all built)")
    p.add_argument("--require-parity", action="store_true", help="refuse a build without parity.json")
    p.add_argument("--allow-failed-parity", action="store_true", help="publish even if parity.json records failures")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    _store_args(p, "print a JSON summary")
    p.set_defaults(func=_cmd_publish)

    p = sub.add_parser("pull", help="download a version's artifacts, verifying checksums (and signature)")
    p.add_argument("ref", metavar="MODEL@SPEC", help="e.g. attention_mesh@1.2.3, @^1.2, @~1.2, @latest, @stable")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--format", type=one_of("--format", formats), help="onnx, tflite or coreml (default: all)")
    p.add_argument("--precision", type=one_of("--precision", precisions), help="fp32, fp16 or int8 (default: all)")
    p.add_argument("--public-key", type=Path, metavar="PEM", help="also trust this key for this pull")
    p.add_argument("--insecure", action="store_true", help="skip signature verification (warns; marks the dir UNVERIFIED)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    _store_args(p)
    p.set_defaults(func=_cmd_pull)

    p = sub.add_parser("ls", help="list the store's models, or one model's versions")
    p.add_argument("model", nargs="?")
    _store_args(p)
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("serve", help="serve a local store directory read-only over HTTP")
    p.add_argument("--store", metavar="DIR", default=None, help="store directory (default: the local default store)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no request log")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("keygen", help="write an Ed25519 signing key pair")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the key files")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser("verify", help="run a version's self-test bundles on this host")
    p.add_argument("ref", nargs="?", metavar="MODEL@SPEC")
    p.add_argument("--dir", metavar="DIR", help="verify a pulled directory instead of the store")
    p.add_argument("--format", type=one_of("--format", formats), help="only this format")
    p.add_argument("--precision", type=one_of("--precision", precisions), help="only this precision")
    p.add_argument("--public-key", type=Path, metavar="PEM", help="also trust this key")
    p.add_argument("--insecure", action="store_true", help="skip signature verification (warns)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    _store_args(p)
    p.set_defaults(func=_cmd_verify)

    tr = sub.add_parser("trust", help="the signing keys pull and verify trust ($MESHPORT_TRUST_DIR)")
    tsub = tr.add_subparsers(dest="trust_command", required=True, metavar="ACTION")
    p = tsub.add_parser("add", help="trust a public key")
    p.add_argument("key", type=Path, metavar="KEY.pub")
    p.set_defaults(func=_cmd_trust)
    p = tsub.add_parser("ls", help="list trusted keys")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_trust)
    p = tsub.add_parser("rm", help="stop trusting a key")
    p.add_argument("key_id", metavar="KEYID")
    p.set_defaults(func=_cmd_trust)

    st = sub.add_parser("store", help="store maintenance: init, policy, fsck, repair, alias")
    ssub = st.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    p = ssub.add_parser("init", help="write the store's policy.json (default: signed and validated versions only)")
    p.add_argument("--allow-unsigned", action="store_true", help="accept unsigned versions")
    p.add_argument("--allow-unvalidated", action="store_true", help="accept versions without a passing parity report")
    p.add_argument("--signer", action="append", type=Path, metavar="KEY.pub",
                   help="only keys given here may sign (repeatable; default: any key)")
    _store_args(p)
    p.set_defaults(func=_cmd_store_init)
    p = ssub.add_parser("policy", help="show the store's policy")
    _store_args(p)
    p.set_defaults(func=_cmd_store_policy)
    p = ssub.add_parser("fsck", help="check the index, manifests and files; non-zero exit on problems")
    p.add_argument("--deep", action="store_true", help="also hash every file")
    _store_args(p)
    p.set_defaults(func=_cmd_fsck)
    p = ssub.add_parser("repair", help="rebuild index.json from the manifests; clear stale incomplete publishes")
    p.add_argument("--stale-after", type=float, default=3600.0, metavar="SECONDS",
                   help="remove incomplete publishes older than this (default 3600; 0 removes all)")
    _store_args(p)
    p.set_defaults(func=_cmd_repair)
    p = ssub.add_parser("alias", help="point an alias (e.g. stable) at a version")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("spec", metavar="SPEC", help="version or spec, e.g. 1.2.3 or ^1.2")
    _store_args(p)
    p.set_defaults(func=_cmd_alias)
