"""The runner contract: every runtime behind one interface (load / infer / close, a context
manager). The base class checks feeds against the model spec, converts layouts explicitly from
the artifact's declared layout (never guessed from shapes), checks outputs and times inference."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelzoo.errors import MeshportError, RegistryError
from modelzoo.spec import ModelSpec


class RunnerError(MeshportError):
    """A runner could not load or run an artifact."""


class InputMismatchError(RunnerError, ValueError):
    """Feeds do not match the model's declared inputs (names, shapes, dtypes)."""


class OutputError(RunnerError):
    """An artifact's outputs do not match the spec, or contain NaN/Inf."""


class RunnerUnavailable(RunnerError):
    """The runtime is not usable on this machine (the message says why)."""


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""


class Runner(ABC):
    """Feeds and outputs are always in the spec's layout (images NCHW); runners convert."""

    name: ClassVar[str]
    format: ClassVar[str]
    # Arithmetic precision the runtime imposes whatever the artifact's ("fp16": the GPU accelerator's
    # default); None: the artifact's own. Tolerances are resolved for it (modelzoo.tolerances).
    compute: ClassVar[str | None] = None
    on_gpu: ClassVar[bool] = False        # runs on LiteRT's GPU accelerator (device and localiser follow)

    def __init__(self, spec: ModelSpec, artifact: Path | None = None, *, input_layout: str | None = None,
                 threads: int | None = None):
        self.spec = spec
        self.artifact = Path(artifact) if artifact is not None else None
        self.threads = threads
        # Layout of the artifact's image input as declared by the build record (e.g. "NHWC").
        self.input_layout = input_layout or spec.inputs[0].layout
        self.last_inference_ms: float | None = None
        self._loaded = False

    # -- availability --------------------------------------------------------------------------
    @classmethod
    def is_available(cls) -> Availability:
        return Availability(True)

    # -- lifecycle -----------------------------------------------------------------------------
    def load(self) -> "Runner":
        avail = self.is_available()
        if not avail.ok:
            raise RunnerUnavailable(f"{self.name}: {avail.reason}")
        if self.artifact is not None and not self.artifact.exists():
            raise RunnerError(f"{self.name}: artifact not found: {self.artifact}")
        try:
            self._load_impl()
        except RunnerError:
            raise
        except Exception as exc:
            where = f" {self.artifact}" if self.artifact else ""
            raise RunnerError(f"{self.name}: cannot load{where}: {type(exc).__name__}: {exc}") from exc
        self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self._close_impl()
            self._loaded = False

    def __enter__(self) -> "Runner":
        return self.load()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- inference -----------------------------------------------------------------------------
    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._loaded:
            self.load()
        self._check_feed(feed)
        native = {k: self._to_native(k, np.ascontiguousarray(v, dtype=np.float32)) for k, v in feed.items()}
        t0 = time.perf_counter()
        try:
            out = self._infer_impl(native)
        except RunnerError:
            raise
        except Exception as exc:
            raise RunnerError(f"{self.name}: inference failed: {type(exc).__name__}: {exc}") from exc
        self.last_inference_ms = (time.perf_counter() - t0) * 1e3
        return self._check_outputs(out)

    def _check_feed(self, feed: dict[str, np.ndarray]) -> None:
        want = {t.name: t for t in self.spec.inputs}
        if set(feed) != set(want):
            raise InputMismatchError(f"{self.name}: feeds {sorted(feed)} do not match inputs {sorted(want)}")
        for name, t in want.items():
            x = np.asarray(feed[name])
            if x.dtype != np.float32:
                raise InputMismatchError(f"{self.name}: input {name} is {x.dtype}, expected {t.describe()}")
            shape = tuple(1 if d is None else d for d in t.shape)
            if tuple(x.shape) != shape:
                raise InputMismatchError(f"{self.name}: input {name} has shape {tuple(x.shape)}, expected "
                                         f"{shape} ({t.describe()})")

    def _to_native(self, name: str, x: np.ndarray) -> np.ndarray:
        spec_layout = self.spec.input(name).layout
        if spec_layout == self.input_layout or x.ndim != 4:
            return x
        if (spec_layout, self.input_layout) == ("NCHW", "NHWC"):
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if (spec_layout, self.input_layout) == ("NHWC", "NCHW"):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        raise InputMismatchError(f"{self.name}: cannot convert {spec_layout} to {self.input_layout}")

    def _check_outputs(self, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = {}
        for t in self.spec.outputs:
            if t.name not in out:
                raise OutputError(f"{self.name}: artifact has no output {t.name!r} (has {sorted(out)})")
            v = np.asarray(out[t.name]).astype(np.float32)
            shape = tuple(1 if d is None else d for d in t.shape)
            if v.shape != shape:
                if v.size == int(np.prod(shape)):
                    v = v.reshape(shape)
                else:
                    raise OutputError(f"{self.name}: output {t.name} has shape {v.shape}, spec {shape}")
            if not np.all(np.isfinite(v)):
                raise OutputError(f"{self.name}: output {t.name} contains NaN or Inf")
            result[t.name] = v
        return result

    # -- hooks ---------------------------------------------------------------------------------
    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def _infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close_impl(self) -> None:
        pass


RUNNERS: dict[str, type[Runner]] = {}


def register_runner(cls: type[Runner]) -> type[Runner]:
    if cls.name in RUNNERS:
        raise RegistryError(f"runner {cls.name!r} is already registered")
    RUNNERS[cls.name] = cls
    return cls


def runs_on_gpu(name: str) -> bool:
    """Whether the registered runner `name` runs on LiteRT's GPU accelerator."""
    return get_runner(name).on_gpu


def get_runner(name: str) -> type[Runner]:
    if name not in RUNNERS:
        raise RegistryError(f"unknown runner {name!r}; known: {', '.join(sorted(RUNNERS))}")
    return RUNNERS[name]
