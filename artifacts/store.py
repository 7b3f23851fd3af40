"""The versioned artifact store.

Layout (DESIGN §4): `<root>/index.json` (versions and aliases per model) and, per version,
`<root>/<model>/<semver>/` holding `manifest.json`, the artifacts (a Core ML `.mlpackage` is kept as
its file tree, every member listed with its sha256, the tree digest equal to build.json's),
`selftest/<artifact>.npz`, `MODEL_CARD.md` and `evidence/{parity,latency}.json`, plus `.claim.json`.

Publishing: claim the version with an exclusive create (`.claim.json`; O_EXCL locally,
`If-None-Match: *` on S3) — exactly one of two concurrent publishers gets it; upload the files;
write `manifest.json` last; then add the version to `index.json` under a file lock (local) or by
compare-and-swap on its ETag (S3). Readers go through the index, so a crash leaves no visible
half-version; `repair` adopts complete-but-unindexed versions and clears stale claims."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from runtime.files import sha256_path
from runtime.errors import IntegrityError, MeshportError, MissingFileError

from . import signing, trust
from .backends import Backend, _is_transport_error, open_backend
from .errors import (CorruptIndexError, NotFoundError, PublishInProgressError,
                     StoreError, VersionExistsError)
from .manifest import CARD, MANIFEST, dumps, now_utc
from .publish import finish_manifest, prepare_version
from .policy import Policy, check_signer, check_validation, read_policy, write_policy
from .pulled import UNVERIFIED, verify_dir
from .results import FsckReport, PublishResult, PullResult, VerifyResult
from .versions import (LATEST, Version, check_alias, check_model_name, check_relpath, latest_of, parse_ref,
                       resolve)

STORE_ENV = "MESHPORT_STORE"
INDEX = "index.json"
INDEX_SCHEMA = "meshport.index/1"
CLAIM = ".claim.json"
Progress = Callable[[str], None] | None


def default_store_url() -> str:
    return os.environ.get(STORE_ENV) or str(Path("~/.local/share/meshport/store").expanduser())


# -- the index -------------------------------------------------------------------------------------
def empty_index() -> dict[str, Any]:
    return {"schema": INDEX_SCHEMA, "updated": now_utc(), "models": {}}


def parse_index(raw: bytes, where: str) -> dict[str, Any]:
    def bad(detail: str) -> CorruptIndexError:
        return CorruptIndexError(f"{where}/{INDEX} is corrupt ({detail}); rebuild it from the manifests with "
                                 f"`meshport store repair --store {where}`")
    try:
        idx = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"not JSON: {exc}") from None
    if not isinstance(idx, dict) or idx.get("schema") != INDEX_SCHEMA or not isinstance(idx.get("models"), dict):
        raise bad(f"expected schema {INDEX_SCHEMA!r}")
    for name, m in idx["models"].items():
        if not (isinstance(m, dict) and isinstance(m.get("versions"), dict) and isinstance(m.get("aliases"), dict)):
            raise bad(f"model {name!r} has no versions/aliases")
        for a, v in m["aliases"].items():
            if v not in m["versions"]:
                raise bad(f"alias {name}@{a} points to unknown version {v}")
    return idx


# -- the store -------------------------------------------------------------------------------------
class Store:
    """A store at a URL: a directory path (default), `s3://bucket/prefix` or read-only `http(s)://`."""

    def __init__(self, url: str | Path | None = None, **storage_options: Any):
        self.url = str(url) if url is not None else default_store_url()
        self.backend: Backend = open_backend(self.url, **storage_options)

    # reading
    def read_index(self) -> dict[str, Any]:
        try:
            raw = self.backend.read(INDEX)
        except FileNotFoundError:
            if self.backend.read_only:
                raise StoreError(f"no store at {self.url}: {INDEX} not found") from None
            return empty_index()      # a new, empty store
        return parse_index(raw, self.url)

    def policy(self) -> Policy:
        """The store's policy (policy.json; the strict default when absent)."""
        return read_policy(self.backend, self.url)

    def set_policy(self, policy: Policy) -> Policy:
        write_policy(self.backend, policy)
        return self.policy()

    def _model(self, index: dict[str, Any], model: str) -> dict[str, Any]:
        check_model_name(model)
        if model not in index["models"]:
            known = ", ".join(sorted(index["models"])) or "none"
            raise NotFoundError(f"{model} is not in the store {self.url}; models: {known}")
        return index["models"][model]

    def resolve(self, model: str, spec: str = LATEST, index: dict[str, Any] | None = None) -> str:
        m = self._model(index or self.read_index(), model)
        return resolve(spec, m["versions"], m["aliases"], model)

    def read_manifest(self, model: str, version: str,
                      index: dict[str, Any] | None = None) -> tuple[dict[str, Any], bytes]:
        """The manifest of an indexed version, checked against the index's sha256."""
        check_model_name(model)
        v = str(Version.parse(version))
        entry = self._model(index or self.read_index(), model)["versions"].get(v)
        if entry is None:
            raise NotFoundError(f"{model}@{v} is not published in {self.url}")
        try:
            raw = self.backend.read(f"{model}/{v}/{MANIFEST}")
        except FileNotFoundError:
            raise IntegrityError(f"{model}@{v}: the index lists it but {MANIFEST} is missing; run `meshport store fsck`") from None
        digest = hashlib.sha256(raw).hexdigest()
        if digest != entry.get("manifest_sha256"):
            raise IntegrityError(f"{model}@{v}: {MANIFEST} sha256 {digest[:12]} ≠ index {str(entry.get('manifest_sha256'))[:12]}")
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            raise IntegrityError(f"{model}@{v}: {MANIFEST} is not JSON: {exc}") from None
        if manifest.get("model") != model or manifest.get("version") != v:
            raise IntegrityError(f"{model}@{v}: {MANIFEST} describes {manifest.get('model')}@{manifest.get('version')}")
        return manifest, raw

    def list_models(self) -> list[dict[str, Any]]:
        idx = self.read_index()
        return [{"model": name, "versions": len(m["versions"]), "latest": m["aliases"].get(LATEST),
                 "aliases": dict(sorted(m["aliases"].items()))} for name, m in sorted(idx["models"].items())]

    def list_versions(self, model: str) -> list[dict[str, Any]]:
        m = self._model(self.read_index(), model)
        rows = []
        for v in sorted(m["versions"], key=lambda s: Version.parse(s).key()):
            e = m["versions"][v]
            rows.append({"version": v, "published": e.get("published"), "signed_by": e.get("signed_by"),
                         "aliases": sorted(a for a, t in m["aliases"].items() if t == v),
                         "artifacts": e.get("artifacts", [])})
        return rows

    # writing
    def publish(self, model: str, build_dir: Path | str, version: str, *, key: Path | str | None = None,
                aliases: Iterable[str] = (), formats: Iterable[str] | None = None,
                precisions: Iterable[str] | None = None, allow_failed_parity: bool = False,
                require_parity: bool = False, progress: Progress = None) -> PublishResult:
        """Publish one build as an immutable version. Raises VersionExistsError if it exists (or is
        being published), PublishError if the build cannot be published as it is."""
        say = progress or (lambda m: None)
        v, aliases = self._check_publish(model, version, aliases, key)
        manifest, files = prepare_version(model, build_dir, v, formats=formats, precisions=precisions,
                                          aliases=aliases, allow_failed_parity=allow_failed_parity,
                                          require_parity=require_parity, progress=say)
        return self.publish_prepared(model, v, manifest, files, key=key, aliases=aliases, progress=say)

    def publish_prepared(self, model: str, version: str, manifest: dict[str, Any],
                         files: list[tuple[str, Path | bytes]], *, key: Path | str | None = None,
                         aliases: Iterable[str] = (), progress: Progress = None) -> PublishResult:
        """Sign and upload a version whose manifest and files are already prepared (`publish` of a
        build, or a pipeline bundle of several builds), then add it to the index."""
        say = progress or (lambda m: None)
        v, aliases = self._check_publish(model, version, aliases, key)
        check_validation(self.policy(), self.url, manifest)
        raw = finish_manifest(manifest, files, key)
        manifest = json.loads(raw)
        base = f"{model}/{v}"
        claim = dumps({"model": model, "version": v, "created": now_utc(), "created_unix": time.time(),
                       "host": os.uname().nodename, "pid": os.getpid()})
        try:
            self.backend.create(f"{base}/{CLAIM}", claim)
        except FileExistsError:
            self._refuse_existing(model, v, None)
            raise PublishInProgressError(f"{model}@{v} is being published by someone else (or a publish crashed: "
                                         f"`meshport store repair --stale-after 0 --store {self.url}` clears it)") from None
        try:
            for rel, src in files:
                say(f"upload {rel}")
                if isinstance(src, bytes):
                    self.backend.write(f"{base}/{rel}", src)
                else:
                    self.backend.upload(f"{base}/{rel}", src)
            say(f"write {MANIFEST}")
            self.backend.write(f"{base}/{MANIFEST}", raw)
        except BaseException:
            with contextlib.suppress(Exception):
                self.backend.delete_tree(base)             # we hold the claim: nothing else writes here
            raise
        say(f"update {INDEX}")
        entry = {"published": manifest["created"], "manifest_sha256": hashlib.sha256(raw).hexdigest(),
                 "signed_by": manifest.get("signed_by"),
                 "artifacts": [{k: a[k] for k in ("path", "format", "precision")} for a in manifest["artifacts"]]}
        try:
            self.backend.update(INDEX, lambda cur: self._add_version(cur, model, v, entry, aliases))
        except MeshportError as exc:
            raise StoreError(f"{model}@{v} was uploaded but {INDEX} was not updated ({exc}); "
                             f"`meshport store repair --store {self.url}` adds it") from exc
        return PublishResult(model, v, self.url, entry["manifest_sha256"], manifest.get("signed_by"),
                             [r["path"] for r in manifest["files"]], aliases)

    def _check_publish(self, model: str, version: str, aliases: Iterable[str],
                       key: Path | str | None) -> tuple[str, list[str]]:
        """The checks before anything is written: names, the alias set, the key file, a writable
        store with a readable index and no such version yet."""
        check_model_name(model)
        v = str(Version.parse(version))
        aliases = sorted({check_alias(a) for a in aliases})
        if LATEST in aliases:
            raise StoreError("'latest' is maintained by the store (the highest release); choose another alias")
        self.backend._writable()
        if key is not None and not Path(key).is_file():
            raise MissingFileError(f"signing key {key} does not exist (create one with `meshport keygen`)")
        check_signer(self.policy(), self.url, signing.private_key_id(key) if key is not None else None)
        index = self.read_index()                          # a corrupt index stops us before anything is written
        self._refuse_existing(model, v, index)
        return v, aliases

    def _refuse_existing(self, model: str, v: str, index: dict[str, Any] | None) -> None:
        if index is not None and v in index["models"].get(model, {}).get("versions", {}):
            raise VersionExistsError(f"{model}@{v} is already published in {self.url}; versions are immutable — "
                                     "publish a new version")
        if self.backend.exists(f"{model}/{v}/{MANIFEST}"):
            raise VersionExistsError(f"{model}@{v} is already published in {self.url}"
                                     + ("" if index is None else " (not yet indexed: `meshport store repair` adds it)"))

    def _add_version(self, current: bytes | None, model: str, v: str, entry: dict[str, Any],
                     aliases: list[str]) -> bytes:
        idx = parse_index(current, self.url) if current is not None else empty_index()
        m = idx["models"].setdefault(model, {"versions": {}, "aliases": {}})
        if v in m["versions"]:
            raise VersionExistsError(f"{model}@{v} is already in {INDEX}")
        m["versions"][v] = entry
        for a in aliases:
            m["aliases"][a] = v
        m["aliases"][LATEST] = latest_of(m["versions"])
        idx["updated"] = now_utc()
        return dumps(idx)

    def set_alias(self, model: str, alias: str, spec: str) -> str:
        """Point `alias` at the version `spec` resolves to; returns that version."""
        check_alias(alias)
        if alias == LATEST:
            raise StoreError("'latest' is maintained by the store (the highest release); choose another alias")
        self.backend._writable()
        target = self.resolve(model, spec)

        def update(cur: bytes | None) -> bytes:
            idx = parse_index(cur, self.url) if cur is not None else empty_index()
            m = self._model(idx, model)
            if target not in m["versions"]:
                raise NotFoundError(f"{model}@{target} disappeared from the index")
            m["aliases"][alias] = target
            idx["updated"] = now_utc()
            return dumps(idx)
        self.backend.update(INDEX, update)
        return target

    # pulling and verifying
    def pull(self, ref: str, out_dir: Path | str, *, format: str | None = None, precision: str | None = None,
             public_key: Path | str | None = None, insecure: bool = False,
             progress: Progress = None) -> PullResult:
        """Download the matching artifacts of MODEL@SPEC (+ their self-tests, the manifest and the card)
        into `out_dir`, checking every size and sha256 (and the signature, given a public key).
        Writes atomically: on any failure nothing new is left in `out_dir`."""
        say = progress or (lambda m: None)
        model, spec = parse_ref(ref)
        index = self.read_index()
        version = self.resolve(model, spec, index)
        manifest, raw = self.read_manifest(model, version, index)
        kid = None if insecure else trust.verify_trusted(manifest, [public_key])
        arts = [a for a in manifest["artifacts"] if (format is None or a["format"] == format)
                and (precision is None or a["precision"] == precision)]
        if not arts:
            have = ", ".join(f"{a['format']}/{a['precision']}" for a in manifest["artifacts"])
            raise NotFoundError(f"{model}@{version} has no {format or '*'}/{precision or '*'} artifact; it has: {have}")
        wanted = {a["path"] for a in arts}
        rows = [r for r in manifest["files"] if r.get("artifact") in wanted or r["role"] == "model-card"]
        out = Path(out_dir)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=".meshport-pull-"))
        try:
            for r in rows:
                say(f"download {r['path']}")
                self._download(f"{model}/{version}", r, tmp / check_relpath(r["path"]))
            for a in arts:
                if a["kind"] == "directory" and sha256_path(tmp / a["path"]) != a["sha256"]:
                    raise IntegrityError(f"{model}@{version}: {a['path']} tree digest ≠ manifest")
            (tmp / MANIFEST).write_bytes(raw)
            units = [a["path"] for a in arts] + [a["selftest"]["path"] for a in arts] + [CARD, MANIFEST]
            if insecure:
                (tmp / UNVERIFIED).write_text("pulled with --insecure: the manifest signature was not checked\n")
                units.append(UNVERIFIED)
            elif (out / UNVERIFIED).exists():
                (out / UNVERIFIED).unlink()
            for u in units:
                dest = out / u
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                os.replace(tmp / u, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return PullResult(model, version, out, arts, kid)

    def _download(self, base: str, row: dict[str, Any], dest: Path) -> None:
        rel = f"{base}/{check_relpath(row['path'])}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        h, n, size = hashlib.sha256(), 0, int(row["bytes"])
        try:
            with self.backend.open(rel) as src, open(dest, "wb") as f:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    n += len(chunk)
                    if n > size:
                        raise IntegrityError(f"{rel}: more bytes than the manifest's {size}")
                    h.update(chunk)
                    f.write(chunk)
        except FileNotFoundError:
            raise IntegrityError(f"{rel} is missing from the store {self.url}") from None
        except MeshportError as exc:
            if isinstance(exc, IntegrityError):
                raise
            raise IntegrityError(f"download of {rel} failed: {exc}") from exc
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            raise IntegrityError(f"download of {rel} failed after {n} of {size} bytes: {type(exc).__name__}: {exc}") from exc
        if n < size:
            raise IntegrityError(f"{rel}: truncated download ({n} of {size} bytes)")
        if h.hexdigest() != row["sha256"]:
            raise IntegrityError(f"{rel}: sha256 {h.hexdigest()[:12]} ≠ manifest {row['sha256'][:12]} (corrupt or tampered)")

    def verify(self, ref: str, *, format: str | None = None, precision: str | None = None,
               public_key: Path | str | None = None, insecure: bool = False,
               progress: Progress = None) -> VerifyResult:
        """Pull MODEL@SPEC into a temporary directory and run every artifact's self-test bundle."""
        with tempfile.TemporaryDirectory(prefix="meshport-verify-") as d:
            pulled = self.pull(ref, Path(d) / "pull", format=format, precision=precision, public_key=public_key,
                               insecure=insecure, progress=progress)
            res = verify_dir(pulled.out_dir, insecure=True, progress=progress)
        return VerifyResult(pulled.model, pulled.version, res.results, pulled.signature)

    # maintenance
    def _scan(self, report: FsckReport) -> tuple[dict[tuple[str, str], dict], list[tuple[str, str, float | None]]]:
        """Complete versions (manifest parsed) and incomplete ones (claim age in seconds, None if unknown)."""
        complete: dict[tuple[str, str], dict] = {}
        incomplete: list[tuple[str, str, float | None]] = []
        for name in self.backend.listdir(""):
            if name.startswith(".") or name == INDEX:
                continue
            try:
                check_model_name(name)
            except MeshportError:
                report.problems.append(f"stray entry {name!r} at the store root")
                continue
            for ver in self.backend.listdir(name):
                try:
                    v = str(Version.parse(ver))
                except MeshportError:
                    report.problems.append(f"stray entry {name}/{ver!r}")
                    continue
                base = f"{name}/{v}"
                try:
                    raw = self.backend.read(f"{base}/{MANIFEST}")
                except FileNotFoundError:
                    age = None
                    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
                        age = time.time() - float(json.loads(self.backend.read(f"{base}/{CLAIM}"))["created_unix"])
                    incomplete.append((name, v, age))
                    continue
                try:
                    doc = json.loads(raw)
                    if doc.get("model") != name or doc.get("version") != v:
                        raise ValueError(f"describes {doc.get('model')}@{doc.get('version')}")
                except ValueError as exc:
                    report.problems.append(f"{base}/{MANIFEST} is unreadable: {exc}")
                    continue
                complete[(name, v)] = {"manifest": doc, "sha256": hashlib.sha256(raw).hexdigest()}
        return complete, incomplete

    def fsck(self, deep: bool = False) -> FsckReport:
        """Check the index against the manifests and the files (sizes; sha256 too with `deep`)."""
        report = FsckReport(self.url)
        try:
            index = self.read_index()
        except CorruptIndexError as exc:
            report.problems.append(str(exc))
            index = None
        if index is not None:
            for model, m in sorted(index["models"].items()):
                for v in sorted(m["versions"]):
                    report.versions_checked += 1
                    try:
                        manifest, _ = self.read_manifest(model, v, index)
                    except MeshportError as exc:
                        report.problems.append(str(exc))
                        continue
                    for r in manifest["files"]:
                        report.files_checked += 1
                        rel = f"{model}/{v}/{r['path']}"
                        try:
                            data_ok = self._check_file(rel, r, deep)
                        except FileNotFoundError:
                            data_ok = "missing"
                        if data_ok is not True:
                            report.problems.append(f"{rel}: {data_ok}")
        if self.backend.supports_listing:
            complete, incomplete = self._scan(report)
            indexed = {(mo, v) for mo, m in (index or {"models": {}})["models"].items() for v in m["versions"]}
            for (mo, v) in sorted(set(complete) - indexed):
                if index is not None:
                    report.problems.append(f"{mo}@{v} is complete but not in {INDEX} (repair adds it)")
            for mo, v, age in incomplete:
                report.problems.append(f"{mo}@{v} is an incomplete publish (no {MANIFEST}; claim age "
                                       f"{'unknown' if age is None else f'{age:.0f} s'}): in progress or crashed")
        return report

    def _check_file(self, rel: str, row: dict[str, Any], deep: bool) -> bool | str:
        if not deep:
            size = self.backend.fs.size(self.backend._p(rel))
            return True if size == row["bytes"] else f"size {size} ≠ manifest {row['bytes']}"
        h, n = hashlib.sha256(), 0
        with self.backend.open(rel) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                n += len(chunk)
        if n != row["bytes"]:
            return f"size {n} ≠ manifest {row['bytes']}"
        return True if h.hexdigest() == row["sha256"] else "sha256 mismatch"

    def repair(self, stale_after: float = 3600.0) -> dict[str, Any]:
        """Rebuild index.json from the manifests; clear incomplete publishes older than `stale_after` s.
        User aliases survive from the old index when it is readable, else from each manifest's
        publish-time aliases (the latest publish wins)."""
        self.backend._writable()
        if not self.backend.supports_listing:
            raise StoreError(f"{self.url} cannot be listed; repair the store behind it")
        report = FsckReport(self.url)
        complete, incomplete = self._scan(report)
        removed = []
        for mo, v, age in incomplete:
            if age is None or age >= stale_after:
                self.backend.delete_tree(f"{mo}/{v}")
                removed.append(f"{mo}@{v}")
        try:
            old = self.read_index()
        except CorruptIndexError:
            old = None
        policy = self.policy()
        quarantined = []
        for key_ in sorted(complete):
            why = self._untrustworthy(key_, complete[key_]["manifest"], policy)
            if why is not None:
                mo, v = key_
                report.problems.append(f"{mo}@{v} left out of {INDEX}: {why}")
                quarantined.append(f"{mo}@{v}")
                del complete[key_]
        idx = empty_index()
        for (mo, v), info in sorted(complete.items(), key=lambda kv: kv[1]["manifest"].get("created") or ""):
            doc = info["manifest"]
            m = idx["models"].setdefault(mo, {"versions": {}, "aliases": {}})
            m["versions"][v] = {"published": doc.get("created"), "manifest_sha256": info["sha256"],
                                "signed_by": doc.get("signed_by"),
                                "artifacts": [{k: a.get(k) for k in ("path", "format", "precision")}
                                              for a in doc.get("artifacts", [])]}
            if old is None:
                for a in doc.get("aliases") or []:
                    m["aliases"][a] = v
        for mo, m in idx["models"].items():
            if old is not None:
                for a, v in old["models"].get(mo, {}).get("aliases", {}).items():
                    if v in m["versions"] and a != LATEST:
                        m["aliases"][a] = v
            m["aliases"][LATEST] = latest_of(m["versions"])
        self.backend.update(INDEX, lambda cur: dumps(idx))
        return {"store": self.url, "versions": sorted(f"{mo}@{v}" for mo, v in complete),
                "removed_incomplete": removed, "quarantined": quarantined, "index_was_corrupt": old is None and self.backend.exists(INDEX),
                "problems": report.problems}

    def _untrustworthy(self, mv: tuple[str, str], doc: dict[str, Any], policy: Policy) -> str | None:
        """Why a complete version may not be (re-)indexed: a signature that does not verify with its
        own key, a signer or an unsigned version the policy refuses, or a file ≠ its manifest."""
        sig = doc.get("signature")
        if sig:
            kid = sig.get("key_id") if isinstance(sig, dict) else None
            try:
                signing.verify_embedded(doc)
            except MeshportError as exc:
                return str(exc)
            if policy.signers and kid not in policy.signers:
                return f"signed by key {kid}, which the store's policy does not list"
        elif policy.require_signature:
            return "unsigned, and the store's policy requires signatures"
        for r in doc.get("files") or []:
            rel = f"{mv[0]}/{mv[1]}/{r['path']}"
            try:
                ok = self._check_file(rel, r, deep=True)
            except (FileNotFoundError, KeyError, TypeError):
                ok = "missing"
            if ok is not True:
                return f"{rel}: {ok}"
        return None


def release_publish(model: str, build_dir: Path | str, version: str, store: str | Path | None = None, *,
                    key: Path | str | None = None, aliases: Iterable[str] = (), require_parity: bool = True,
                    storage_options: dict[str, Any] | None = None, progress: Progress = None) -> PublishResult:
    """The publish step of `meshport release` (build → validate → bench → publish): refuses a build
    without a passing parity report (unless `require_parity=False`)."""
    return Store(store, **(storage_options or {})).publish(model, build_dir, version, key=key, aliases=aliases,
                                                           require_parity=require_parity, progress=progress)
