"""The weight fetcher: pinned wheel from PyPI through pip, verified, cached, atomic."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from modelzoo.errors import IntegrityError
from modelzoo.fetch import MEMBERS, MemberPin, fetch, sha256_file

NAME = "face_landmark_with_attention.tflite"


@pytest.fixture(scope="module")
def cold_cache(tmp_path_factory):
    """One real cold fetch (pip download from PyPI) shared by the tests below."""
    cache = tmp_path_factory.mktemp("cache")
    t0 = time.perf_counter()
    path = fetch(NAME, cache)
    return cache, path, time.perf_counter() - t0


def _files(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()}


def test_cold_fetch_downloads_and_verifies(cold_cache):
    cache, path, _ = cold_cache
    assert path.is_relative_to(cache) and sha256_file(path) == MEMBERS[NAME].sha256
    assert not any(".part" in f or ".download" in f for f in _files(cache))


def test_warm_cache_needs_no_network(cold_cache):
    cache, path, _ = cold_cache
    assert fetch(NAME, cache, offline=True) == path


def test_env_var_selects_cache(cold_cache, monkeypatch):
    cache, path, _ = cold_cache
    monkeypatch.setenv("MESHPORT_CACHE", str(cache))
    monkeypatch.setenv("MESHPORT_OFFLINE", "1")
    assert fetch(NAME) == path


def test_cold_cache_offline_is_refused(tmp_path):
    with pytest.raises(IntegrityError, match="downloads are disabled"):
        fetch(NAME, tmp_path, offline=True)
    assert _files(tmp_path) == set()


def test_corrupted_cached_member_is_refetched(cold_cache):
    cache, path, _ = cold_cache
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    assert fetch(NAME, cache, offline=True) == path  # re-extracted from the cached wheel
    assert sha256_file(path) == MEMBERS[NAME].sha256


def test_truncated_wheel_is_refused_offline_and_refetched_online(cold_cache, tmp_path):
    cache, path, _ = cold_cache
    wheel = cache / "wheels" / MEMBERS[NAME].wheel.filename
    other = MEMBERS["iris_landmark.tflite"]
    saved = wheel.read_bytes()
    wheel.write_bytes(saved[: len(saved) // 3])
    with pytest.raises(IntegrityError):
        fetch(other, cache, offline=True)
    assert not wheel.exists()               # the bad download is gone, not kept
    assert sha256_file(fetch(other, cache)) == other.sha256
    assert sha256_file(wheel) == other.wheel.sha256


def test_wrong_member_hash_leaves_nothing(cold_cache):
    cache, _, _ = cold_cache
    bad = replace(MEMBERS["face_landmark.tflite"], sha256="0" * 64)
    before = _files(cache)
    with pytest.raises(IntegrityError, match="sha256"):
        fetch(bad, cache, offline=True)
    assert _files(cache) == before


def test_missing_member_raises(cold_cache):
    cache, _, _ = cold_cache
    pin = MemberPin(MEMBERS[NAME].wheel, "mediapipe/modules/no_such_model.tflite", "0" * 64)
    before = _files(cache)
    with pytest.raises(IntegrityError, match="no member"):
        fetch(pin, cache, offline=True)
    assert _files(cache) == before


def test_wrong_wheel_hash_raises_and_leaves_nothing(tmp_path):
    pin = MEMBERS[NAME]
    bad = replace(pin, wheel=replace(pin.wheel, sha256="f" * 64))
    with pytest.raises(IntegrityError, match="sha256"):
        fetch(bad, tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_unknown_name():
    with pytest.raises(KeyError, match="known"):
        fetch("nope.tflite")
