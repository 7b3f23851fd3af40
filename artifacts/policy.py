"""A store's publishing policy, `<root>/policy.json`. Absent means the strict default: every
version signed, every version with a passing parity report. A store may list the key ids allowed
to sign for it (empty: any key)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .backends import Backend
from .errors import PolicyError, StoreError
from .manifest import dumps

POLICY = "policy.json"
POLICY_SCHEMA = "meshport.policy/1"


@dataclass
class Policy:
    require_signature: bool = True
    require_validation: bool = True
    signers: list[str] = field(default_factory=list)
    declared: bool = False              # False: no policy.json, the default applies

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("declared")
        return {"schema": POLICY_SCHEMA, **d}


def read_policy(backend: Backend, url: str) -> Policy:
    try:
        raw = backend.read(POLICY)
    except FileNotFoundError:
        return Policy()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{url}/{POLICY} is not JSON ({exc}); rewrite it with `meshport store init`") from None
    if not isinstance(doc, dict) or doc.get("schema") != POLICY_SCHEMA:
        raise StoreError(f"{url}/{POLICY}: expected schema {POLICY_SCHEMA!r}")
    signers = doc.get("signers", [])
    if not (isinstance(signers, list) and all(isinstance(k, str) for k in signers)):
        raise StoreError(f"{url}/{POLICY}: signers must be a list of key ids")
    flags = {k: doc.get(k, True) for k in ("require_signature", "require_validation")}
    for k, v in flags.items():
        if not isinstance(v, bool):
            raise StoreError(f"{url}/{POLICY}: {k} must be true or false")
    return Policy(signers=sorted(signers), declared=True, **flags)


def write_policy(backend: Backend, policy: Policy) -> None:
    backend._writable()
    backend.write(POLICY, dumps(policy.to_json()))


def check_signer(policy: Policy, url: str, key_id: str | None) -> None:
    """Refuse an unsigned publish or a signer the policy does not list (before anything is written)."""
    if key_id is None:
        if policy.require_signature:
            raise PolicyError(f"{url} requires signed versions: publish with --key KEY.pem (or allow unsigned "
                              f"versions with `meshport store init --allow-unsigned --store {url}`)")
        return
    if policy.signers and key_id not in policy.signers:
        raise PolicyError(f"key {key_id} may not sign for {url} (allowed: {', '.join(policy.signers)}); add it with "
                          f"`meshport store init --signer KEY.pub --store {url}`")


def check_validation(policy: Policy, url: str, manifest: dict[str, Any]) -> None:
    """Refuse a version without a passing parity report when the policy requires validation."""
    if not policy.require_validation:
        return
    evidence = manifest.get("evidence") or {}
    photo = evidence.get("photo_parity")
    if isinstance(photo, dict) and photo.get("rows"):
        return          # a pipeline bundle: it ships only the targets that passed whole-photo parity
    parity = evidence.get("parity")
    if not isinstance(parity, dict) or parity.get("passed") is not True:
        why = "no parity report" if parity is None else "a parity report that did not pass"
        raise PolicyError(f"{url} requires validated versions but {manifest.get('model')}@{manifest.get('version')} "
                          f"has {why}: run `meshport validate` first (or allow it with "
                          f"`meshport store init --allow-unvalidated --store {url}`)")
