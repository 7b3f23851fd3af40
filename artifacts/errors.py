"""Typed errors of the artifact store. Checksum and truncation failures raise
`modelzoo.errors.IntegrityError` (re-exported here)."""
from __future__ import annotations

from runtime.errors import IntegrityError, MeshportError

__all__ = ["IntegrityError", "StoreError", "InvalidNameError", "VersionSpecError", "NotFoundError",
           "VersionExistsError", "PublishInProgressError", "ReadOnlyStoreError", "CorruptIndexError",
           "SignatureError", "PublishError", "SelfTestError", "PolicyError", "UntrustedSignerError"]


class StoreError(MeshportError):
    """The store cannot do what was asked (unreachable, unsupported URL, inconsistent state)."""


class InvalidNameError(StoreError, ValueError):
    """A model, version, alias or file name that is unsafe or malformed (`..`, `/`, absolute paths)."""


class VersionSpecError(StoreError, ValueError):
    """A version spec (`1.2.3`, `^1.2`, `~1.2`, `latest`, alias) that cannot be parsed."""


class NotFoundError(StoreError, KeyError):
    """No such model, version, alias or artifact in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class VersionExistsError(StoreError):
    """The version is already published; versions are immutable."""


class PublishInProgressError(VersionExistsError):
    """Another publish holds the claim on this version (running, or crashed: `meshport store repair`)."""


class ReadOnlyStoreError(StoreError):
    """A write was attempted on a read-only backend (http/https)."""


class CorruptIndexError(StoreError):
    """index.json is unreadable or malformed; `meshport store repair` rebuilds it from the manifests."""


class SignatureError(MeshportError):
    """A manifest signature is missing, malformed, or does not verify with the given public key."""


class PublishError(MeshportError):
    """A build cannot be published as it is (stale, missing files, failed parity evidence)."""


class SelfTestError(MeshportError):
    """An artifact's self-test outputs differ from the golden outputs recorded at publish time."""


class PolicyError(PublishError):
    """The store's policy (policy.json) refuses the publish: unsigned, unvalidated, or a signer it does not list."""


class UntrustedSignerError(SignatureError):
    """A manifest is signed by a key that is not in the user's trust directory (nor given with --public-key)."""
