"""The user's trusted signing keys: a directory of Ed25519 public keys (`$MESHPORT_TRUST_DIR`,
default `~/.config/meshport/trust/`), one `<key id>.pub.pem` each. A pulled manifest verifies when
its signature's key id is one of these (or a key given explicitly) and the signature checks."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from runtime.errors import MissingFileError
from runtime.files import write_bytes_atomic

from . import signing
from .errors import NotFoundError, SignatureError, UntrustedSignerError

TRUST_ENV = "MESHPORT_TRUST_DIR"


def trust_dir() -> Path:
    return Path(os.environ.get(TRUST_ENV) or Path("~/.config/meshport/trust").expanduser())


def public_key_id(public_key: Path | str) -> str:
    return signing.key_id(signing._raw_public(signing._load_public(public_key)))


def add(public_key: Path | str) -> str:
    """Trust a public key; returns its key id (adding a trusted key again is a no-op)."""
    src = Path(public_key)
    if not src.is_file():
        raise MissingFileError(f"public key {src} does not exist")
    kid = public_key_id(src)
    write_bytes_atomic(trust_dir() / f"{kid}.pub.pem", src.read_bytes())
    return kid


def keys() -> dict[str, Path]:
    """Key id → public key file of every trusted key (files whose content is not their name's key are skipped)."""
    d = trust_dir()
    out: dict[str, Path] = {}
    for p in sorted(d.glob("*.pub.pem")) if d.is_dir() else []:
        try:
            kid = public_key_id(p)
        except SignatureError:
            continue
        if p.name == f"{kid}.pub.pem":
            out[kid] = p
    return out


def remove(key_id: str) -> Path:
    p = keys().get(key_id)
    if p is None:
        raise NotFoundError(f"key {key_id} is not trusted (trusted: {', '.join(keys()) or 'none'}; dir {trust_dir()})")
    p.unlink()
    return p


def verify_trusted(doc: dict[str, Any], extra: Iterable[Path | str | None] = ()) -> str:
    """Verify `doc`'s signature with a trusted key (or one in `extra`); returns its key id.
    Unsigned, malformed, unknown signer or a bad signature raise SignatureError."""
    candidates = dict(keys())
    for k in extra:
        if k is not None:
            candidates[public_key_id(k)] = Path(k)
    sig = doc.get("signature")
    what = signing._what(doc)
    if not sig:
        raise SignatureError(f"{what} is unsigned; pull with --insecure to accept it unverified")
    if not isinstance(sig, dict) or not isinstance(sig.get("key_id"), str):
        raise SignatureError(f"{what}: malformed signature block")
    key = candidates.get(sig["key_id"])
    if key is None:
        raise UntrustedSignerError(f"{what} is signed by key {sig['key_id']}, which is not trusted; trust it with "
                                   f"`meshport trust add KEY.pub` (trust dir {trust_dir()}) or pass --public-key")
    return signing.verify(doc, key)
