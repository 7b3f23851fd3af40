"""Semantic versions, version specs and name rules (no store needed)."""
from __future__ import annotations

import pytest

from artifacts import InvalidNameError, NotFoundError, Version, VersionSpecError, parse_ref, resolve
from artifacts.versions import check_alias, check_relpath, latest_of

VERSIONS = ["0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "1.10.0", "2.0.0", "2.1.0-beta"]
ALIASES = {"latest": "2.0.0", "stable": "1.2.5"}


@pytest.mark.parametrize("spec, want", [
    ("1.2.0", "1.2.0"), ("1.3.0-rc.1", "1.3.0-rc.1"), ("latest", "2.0.0"), ("stable", "1.2.5"),
    ("^1.2", "1.10.0"), ("^1", "1.10.0"), ("~1.2", "1.2.5"), ("~1.2.1", "1.2.5"), ("~1", "1.10.0"),
    ("1.2", "1.2.5"), ("1", "1.10.0"), ("^0.9", "0.9.0"), ("=1.0", "1.0.0"), ("2", "2.0.0"),
])
def test_resolve(spec, want):
    assert resolve(spec, VERSIONS, ALIASES) == want


@pytest.mark.parametrize("spec, err", [
    ("3.0.0", NotFoundError), ("^3", NotFoundError), ("beta", NotFoundError), ("~0.1", NotFoundError),
    (">=1.0", VersionSpecError), ("1.x", VersionSpecError), ("", VersionSpecError), ("^", VersionSpecError),
])
def test_resolve_errors(spec, err):
    with pytest.raises(err):
        resolve(spec, VERSIONS, ALIASES, "m")


def test_ordering_and_latest():
    vs = sorted((Version.parse(v) for v in VERSIONS), key=Version.key)
    assert [str(v) for v in vs] == ["0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "1.10.0", "2.0.0", "2.1.0-beta"]
    assert Version.parse("1.0.0-alpha") < Version.parse("1.0.0-alpha.1") < Version.parse("1.0.0-beta") \
        < Version.parse("1.0.0")
    assert latest_of(VERSIONS) == "2.0.0"                  # pre-releases are not `latest` while a release exists
    assert latest_of(["1.0.0-rc.1", "1.0.0-rc.2"]) == "1.0.0-rc.2"
    assert latest_of([]) is None


def test_names():
    assert parse_ref("attention_mesh") == ("attention_mesh", "latest")
    assert parse_ref("attention_mesh@^1.2") == ("attention_mesh", "^1.2")
    for bad in ("../x", "x/y", "/x", "X", "x.y", "a b", "-x"):
        with pytest.raises(InvalidNameError):
            parse_ref(bad)
    for bad in ("Stable", "1x", "a/b", "latest!"):
        with pytest.raises(InvalidNameError):
            check_alias(bad)
    assert check_relpath("a.mlpackage/Data/com.apple.CoreML/weights/weight.bin")
    for bad in ("../a", "a/../b", "/a", "a//b", "a\\b", ".hidden", "", "a/./b"):
        with pytest.raises(InvalidNameError):
            check_relpath(bad)
