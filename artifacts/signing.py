"""Ed25519 signatures over the canonical manifest (sorted keys, no whitespace, UTF-8, the
`signature` field excluded)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import SignatureError

ALGORITHM = "ed25519"
PRIVATE_NAME, PUBLIC_NAME = "meshport-signing.pem", "meshport-signing.pub.pem"


def canonical_json(doc: dict[str, Any]) -> bytes:
    """The signed bytes: the document without `signature`, sorted keys, no whitespace, UTF-8."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def keygen(out_dir: Path | str, force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: `meshport-signing.pem` (private, 0600) and `.pub.pem`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out / PRIVATE_NAME, out / PUBLIC_NAME
    if not force and (priv_path.exists() or pub_path.exists()):
        raise FileExistsError(f"{priv_path} already exists; refusing to overwrite a signing key (use --force)")
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    tmp = priv_path.with_name(f".{priv_path.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    os.chmod(tmp, 0o600)
    os.replace(tmp, priv_path)
    pub_path.write_bytes(pub)
    return priv_path, pub_path


def _load_private(path: Path | str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 private key")
    return key


def _load_public(path: Path | str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 public key")
    return key


def _raw_public(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def private_key_id(private_key: Path | str) -> str:
    """The key id (sha256 of the raw public key, 16 hex digits) of a private key file."""
    return key_id(_raw_public(_load_private(private_key).public_key()))


def sign(doc: dict[str, Any], private_key: Path | str) -> dict[str, Any]:
    """A copy of `doc` with `signature` = {algorithm, key_id, public_key, value} over its canonical JSON."""
    key = _load_private(private_key)
    raw_pub = _raw_public(key.public_key())
    value = key.sign(canonical_json(doc))
    return {**{k: v for k, v in doc.items() if k != "signature"},
            "signature": {"algorithm": ALGORITHM, "key_id": key_id(raw_pub),
                          "public_key": base64.b64encode(raw_pub).decode(), "value": base64.b64encode(value).decode()}}


def verify(doc: dict[str, Any], public_key: Path | str) -> str:
    """Check `doc`'s signature with the trusted public key; returns the key id or raises SignatureError."""
    return _verify_with(doc, _load_public(public_key), Path(public_key).name)


def _verify_with(doc: dict[str, Any], key, name: str) -> str:
    from cryptography.exceptions import InvalidSignature

    kid = key_id(_raw_public(key))
    sig = doc.get("signature")
    if not sig:
        raise SignatureError(f"{_what(doc)} is unsigned; it cannot be verified with {name}")
    if not isinstance(sig, dict) or sig.get("algorithm") != ALGORITHM or not isinstance(sig.get("value"), str):
        raise SignatureError(f"{_what(doc)}: malformed signature block")
    try:
        value = base64.b64decode(sig["value"], validate=True)
    except ValueError:
        raise SignatureError(f"{_what(doc)}: signature is not base64") from None
    try:
        key.verify(value, canonical_json(doc))
    except InvalidSignature:
        hint = (f"signed by key {sig.get('key_id')}, checked with key {kid}" if sig.get("key_id") != kid
                else "the manifest was modified after signing")
        raise SignatureError(f"{_what(doc)}: signature does not verify ({hint})") from None
    return kid


def _what(doc: dict[str, Any]) -> str:
    return f"manifest of {doc.get('model', '?')}@{doc.get('version', '?')}"


def verify_embedded(doc: dict[str, Any]) -> str:
    """Check that `doc`'s signature verifies with the public key it carries (self-consistency, not trust:
    a manifest edited after signing fails); returns the key id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig = doc.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("public_key"), str):
        raise SignatureError(f"{_what(doc)}: malformed or missing signature block")
    try:
        raw = base64.b64decode(sig["public_key"], validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SignatureError(f"{_what(doc)}: the signature's public key is malformed") from None
    if key_id(raw) != sig.get("key_id"):
        raise SignatureError(f"{_what(doc)}: the signature's key id does not match its public key")
    return _verify_with(doc, key, f"its own key {sig.get('key_id')}")
