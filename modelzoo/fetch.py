"""Weight fetcher: MediaPipe's .tflite files, taken from the pinned `mediapipe` wheel on PyPI.

The wheel is downloaded with pip (`pip download --no-deps`, pinned platform so any host gets the
same file) into a cache directory, its sha256 checked, the member extracted and checked again.
With a warm cache nothing touches the network. A bad hash, a truncated file or a missing member
raises IntegrityError and leaves no file behind. Weights are never committed to the repo.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import IntegrityError, UnknownWeightsError

CACHE_ENV = "MESHPORT_CACHE"
OFFLINE_ENV = "MESHPORT_OFFLINE"


@dataclass(frozen=True)
class WheelPin:
    requirement: str
    filename: str
    sha256: str
    platform: str
    python_version: str


@dataclass(frozen=True)
class MemberPin:
    wheel: WheelPin
    path: str      # path inside the wheel
    sha256: str

    @property
    def name(self) -> str:
        return Path(self.path).name


MEDIAPIPE_WHEEL = WheelPin(
    requirement="mediapipe==0.10.21",
    filename="mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256="05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
    platform="manylinux_2_28_x86_64",
    python_version="3.11",
)

# How specs and model cards name the wheel and credit its weights.
MEDIAPIPE_SOURCE = f"{MEDIAPIPE_WHEEL.requirement} (PyPI wheel)"
MEDIAPIPE_ATTRIBUTION = ("Weights from Google MediaPipe (https://github.com/google-ai-edge/mediapipe), "
                         "Copyright Google LLC, licensed under the Apache License 2.0.")

MEMBERS = {
    m.name: m
    for m in (
        MemberPin(MEDIAPIPE_WHEEL, "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
                  "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"),
        MemberPin(MEDIAPIPE_WHEEL, "mediapipe/modules/face_landmark/face_landmark.tflite",
                  "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
        MemberPin(MEDIAPIPE_WHEEL, "mediapipe/modules/iris_landmark/iris_landmark.tflite",
                  "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
        MemberPin(MEDIAPIPE_WHEEL, "mediapipe/modules/face_detection/face_detection_short_range.tflite",
                  "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
        MemberPin(MEDIAPIPE_WHEEL, "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
                  "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    )
}


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "meshport"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(member: str | MemberPin, cache_dir: Path | str | None = None, offline: bool | None = None) -> Path:
    """Path of a verified weight file in the cache, downloading the wheel if needed.

    `member` is a file name from MEMBERS (e.g. "face_landmark.tflite") or a MemberPin.
    `offline` (default: env MESHPORT_OFFLINE=1) forbids downloads: a cold cache then raises.
    """
    pin = MEMBERS[member] if isinstance(member, str) and member in MEMBERS else member
    if not isinstance(pin, MemberPin):
        raise UnknownWeightsError(f"unknown weight file {member!r}; known: {', '.join(sorted(MEMBERS))}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if offline is None:
        offline = os.environ.get(OFFLINE_ENV, "") not in ("", "0")
    target = cache / "members" / pin.sha256[:16] / pin.name
    if target.exists():
        if sha256_file(target) == pin.sha256:
            return target
        target.unlink()  # corrupted cache entry: drop it and fetch again
    wheel = _fetch_wheel(pin.wheel, cache, offline)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(pin.path) as src:
                    shutil.copyfileobj(src, out)
            except KeyError:
                raise IntegrityError(f"{wheel.name} has no member {pin.path}") from None
            except zipfile.BadZipFile as exc:
                raise IntegrityError(f"{wheel.name} is not a valid wheel: {exc}") from None
        got = sha256_file(tmp)
        if got != pin.sha256:
            raise IntegrityError(f"{pin.path} from {wheel.name}: sha256 {got} != pinned {pin.sha256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _fetch_wheel(pin: WheelPin, cache: Path, offline: bool) -> Path:
    wheels = cache / "wheels"
    path = wheels / pin.filename
    if path.exists():
        if sha256_file(path) == pin.sha256:
            return path
        path.unlink()  # truncated or tampered download
    if offline:
        raise IntegrityError(f"{pin.filename} is not in the cache {wheels} and downloads are disabled "
                             f"({OFFLINE_ENV}=1)")
    wheels.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheels, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", pin.platform, "--python-version", pin.python_version,
               "--implementation", "cp", "--disable-pip-version-check", "-q", "-d", tmp, pin.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got_path = Path(tmp) / pin.filename
        if proc.returncode != 0 or not got_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise IntegrityError(f"pip could not download {pin.requirement}: {tail[0]}")
        got = sha256_file(got_path)
        if got != pin.sha256:
            raise IntegrityError(f"{pin.filename}: sha256 {got} != pinned {pin.sha256}")
        os.replace(got_path, path)
    return path
