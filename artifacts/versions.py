"""Names and semantic versions: validation of everything that becomes a path in the store, and
resolution of version specs (`1.2.3`, `^1.2`, `~1.2`, `latest`, alias names)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from .errors import InvalidNameError, NotFoundError, VersionSpecError

_MODEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                     r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$")
_PARTIAL = re.compile(r"^(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?$")
_FILE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}$")
LATEST = "latest"


def check_model_name(name: str) -> str:
    """A model id usable as one path segment: lowercase letters, digits, `_`, `-`."""
    if not isinstance(name, str) or not _MODEL.match(name) or ".." in name:
        raise InvalidNameError(f"invalid model name {name!r}: use lowercase letters, digits, '_', '-' "
                               "(no '/', '..' or absolute paths)")
    return name


def check_alias(name: str) -> str:
    if not isinstance(name, str) or not _ALIAS.match(name):
        raise InvalidNameError(f"invalid alias {name!r}: a lowercase word such as 'stable' (letters, digits, '_', '-')")
    return name


def check_relpath(path: str) -> str:
    """A relative file path inside a version: `/`-separated safe segments, no `..`, not absolute."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise InvalidNameError(f"unsafe file path {path!r} in the store")
    for part in path.split("/"):
        if not _FILE_PART.match(part) or part in (".", ".."):
            raise InvalidNameError(f"unsafe file path {path!r} in the store")
    return path


@dataclass(frozen=True, order=False)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Version":
        m = _SEMVER.match(text) if isinstance(text, str) else None
        if not m:
            raise InvalidNameError(f"invalid version {text!r}: expected a semantic version X.Y.Z (e.g. 1.2.3 or 1.3.0-rc.1)")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    def key(self) -> tuple:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: "Version") -> bool:
        return self.key() < other.key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{'.'.join(self.pre)}" if self.pre else "")


def parse_ref(ref: str) -> tuple[str, str]:
    """`MODEL@SPEC` → (model, spec); a bare `MODEL` means `MODEL@latest`."""
    model, _, spec = ref.partition("@")
    return check_model_name(model), (spec or LATEST)


def resolve(spec: str, versions: Iterable[str], aliases: Mapping[str, str], model: str = "model") -> str:
    """The highest published version matching `spec`. Ranges (`^`, `~`, `1`, `1.2`) skip pre-releases."""
    published = sorted((Version.parse(v) for v in versions), key=Version.key)
    if not isinstance(spec, str) or not spec:
        raise VersionSpecError(f"empty version spec for {model}")
    if spec in aliases:
        return aliases[spec]
    if spec == LATEST:
        raise NotFoundError(f"{model} has no published versions")
    if _SEMVER.match(spec):
        if spec not in {str(v) for v in published}:
            raise NotFoundError(f"{model}@{spec} is not published; versions: {_list(published)}")
        return spec
    op, body = (spec[0], spec[1:]) if spec[0] in "^~=" else ("", spec)
    m = _PARTIAL.match(body)
    if not m:
        if _ALIAS.match(spec):
            raise NotFoundError(f"{model} has no alias {spec!r}; aliases: {', '.join(sorted(aliases)) or 'none'}")
        raise VersionSpecError(f"invalid version spec {spec!r}: use 1.2.3, ^1.2, ~1.2, 1.2, latest or an alias")
    parts = [int(g) for g in m.groups() if g is not None]
    lo = tuple(parts + [0] * (3 - len(parts)))
    if op == "^":        # same left-most non-zero component
        nz = next((i for i, p in enumerate(parts) if p != 0), len(parts) - 1)
        hi = tuple(parts[:nz]) + (parts[nz] + 1,)
    elif op == "~":      # same major.minor (or same major if only the major is given)
        hi = (parts[0] + 1,) if len(parts) == 1 else (parts[0], parts[1] + 1)
    else:                # `1.2` / `=1.2` : that prefix
        hi = tuple(parts[:-1]) + (parts[-1] + 1,)
    hits = [v for v in published if not v.pre and lo <= (v.major, v.minor, v.patch)
            and (v.major, v.minor, v.patch)[:len(hi)] < hi]
    if not hits:
        raise NotFoundError(f"no version of {model} matches {spec!r}; versions: {_list(published)}")
    return str(hits[-1])


def latest_of(versions: Iterable[str]) -> str | None:
    """The highest release, or the highest pre-release when there is no release."""
    vs = sorted((Version.parse(v) for v in versions), key=Version.key)
    releases = [v for v in vs if not v.pre]
    return str((releases or vs)[-1]) if vs else None


def _list(vs: list[Version]) -> str:
    return ", ".join(map(str, vs)) or "none"
