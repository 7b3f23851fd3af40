"""Artifacts: the versioned store, manifests, signatures, model cards, pull and verify.

    from artifacts import Store
    Store("s3://bucket/models").publish("attention_mesh", "build", "1.2.0", key="meshport-signing.pem")
    Store("https://models.example.com").pull("attention_mesh@^1.2", "models/", format="tflite",
                                             precision="fp16", public_key="meshport-signing.pub.pem")
"""
from .errors import (CorruptIndexError, IntegrityError, InvalidNameError, NotFoundError, PublishError,
                     PublishInProgressError, ReadOnlyStoreError, SelfTestError, SignatureError, StoreError,
                     VersionExistsError, VersionSpecError, PolicyError, UntrustedSignerError)
from . import trust
from .policy import Policy
from .signing import canonical_json, keygen
from .pulled import verify_dir
from .results import FsckReport, PublishResult, PullResult, VerifyResult
from .store import Store, default_store_url, release_publish
from .versions import Version, parse_ref, resolve

__all__ = [
    "CorruptIndexError", "IntegrityError", "InvalidNameError", "NotFoundError", "PublishError",
    "PublishInProgressError", "ReadOnlyStoreError", "SelfTestError", "SignatureError", "StoreError",
    "VersionExistsError", "VersionSpecError", "canonical_json", "keygen", "FsckReport", "PublishResult",
    "PullResult", "Store", "VerifyResult", "default_store_url", "release_publish", "verify_dir", "Version",
    "parse_ref", "resolve", "PolicyError", "UntrustedSignerError", "Policy", "trust",
]
