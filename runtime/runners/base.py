"""The runner contract: every runtime behind one interface (load / infer / close, a context
manager), the one way Meshport runs an artifact.

With a model spec (anything with `inputs`/`outputs` of named tensors in the spec's layout, images
NCHW) the base class checks feeds against it, converts layouts explicitly from the artifact's
declared layout (never guessed from shapes), checks outputs (names, shapes, finite) and times
inference. Without one (`spec=None`: a sub-model cut for profiling, a conversion probe) feeds and
outputs are the artifact's own, in its native layout. `run_native` skips the layout conversion
for callers that prepare native feeds outside a timed loop."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import MeshportError
from ..registry import Registry


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
    """Feeds and outputs are in the spec's layout (images NCHW); runners convert. `artifact` is a
    path, or the model's bytes for runtimes that load from memory (TFLite)."""

    name: ClassVar[str]
    format: ClassVar[str]
    # Arithmetic precision the runtime imposes whatever the artifact's ("fp16": the GPU accelerator's
    # default); None: the artifact's own. Tolerances are resolved for it (modelzoo.tolerances).
    compute: ClassVar[str | None] = None
    on_gpu: ClassVar[bool] = False        # runs on LiteRT's GPU accelerator (device and localiser follow)

    def __init__(self, spec: Any | None, artifact: Path | str | bytes | None = None, *,
                 input_layout: str | None = None, threads: int | None = None):
        self.spec = spec
        self.artifact = (None if artifact is None else bytes(artifact) if isinstance(artifact, (bytes, bytearray))
                         else Path(artifact))
        self.threads = threads
        # Layout of the artifact's image input as declared by the build record (e.g. "NHWC").
        self.input_layout = input_layout or (spec.inputs[0].layout if spec is not None else None)
        self.last_inference_ms: float | None = None
        self._loaded = False

    # -- availability --------------------------------------------------------------------------
    @classmethod
    def is_available(cls) -> Availability:
        return Availability(True)

    # -- lifecycle -----------------------------------------------------------------------------
    def load(self) -> "Runner":
        if self._loaded:
            return self
        avail = self.is_available()
        if not avail.ok:
            raise RunnerUnavailable(f"{self.name}: {avail.reason}")
        if isinstance(self.artifact, Path) and not self.artifact.exists():
            raise RunnerError(f"{self.name}: artifact not found: {self.artifact}")
        try:
            self._load_impl()
        except RunnerError:
            raise
        except Exception as exc:
            where = f" {self.artifact}" if isinstance(self.artifact, Path) else ""
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
        """Run one feed in the spec's layout; outputs checked against the spec (without a spec:
        the artifact's own inputs and outputs, unchecked)."""
        if self.spec is None:
            return self.run_native(feed)
        self._check_feed(feed)
        native = {k: self._to_native(k, np.ascontiguousarray(v, dtype=np.float32)) for k, v in feed.items()}
        return self._check_outputs(self.run_native(native))

    def run_native(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run feeds already in the artifact's own layout and dtype; outputs as the runtime returns
        them. `last_inference_ms` times exactly this call's inference."""
        if not self._loaded:
            self.load()
        t0 = time.perf_counter()
        try:
            out = self._infer_impl(feed)
        except RunnerError:
            raise
        except Exception as exc:
            raise RunnerError(f"{self.name}: inference failed: {type(exc).__name__}: {exc}") from exc
        self.last_inference_ms = (time.perf_counter() - t0) * 1e3
        return out

    @property
    def input_names(self) -> list[str]:
        """The artifact's input names, in its order (after `load`)."""
        return list(self._native_inputs())

    def _native_inputs(self) -> dict[str, tuple[int, ...]]:
        """Input name → shape as the loaded runtime declares them (runners override)."""
        return {t.name: tuple(1 if d is None else d for d in t.shape) for t in self.spec.inputs}

    def _check_native_inputs(self) -> None:
        """With a spec, the artifact must have exactly the spec's inputs."""
        if self.spec is None:
            return
        names, want = set(self._native_inputs()), {t.name for t in self.spec.inputs}
        if names != want:
            where = self.artifact.name if isinstance(self.artifact, Path) else "the model"
            raise RunnerError(f"{self.name}: {where} has inputs {sorted(names)}, spec {sorted(want)}")

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


RUNNERS: Registry[type[Runner]] = Registry("runner")


def register_runner(cls: type[Runner]) -> type[Runner]:
    return RUNNERS.add(cls.name, cls)


def runs_on_gpu(name: str) -> bool:
    """Whether the registered runner `name` runs on LiteRT's GPU accelerator."""
    return get_runner(name).on_gpu


def get_runner(name: str) -> type[Runner]:
    return RUNNERS.get_known(name)


def runner_for(name: str, spec: Any, root: Path | str, entry: Any, threads: int | None = None) -> Runner:
    """A runner for one artifact of a build record (`entry`: a `runtime.record.ArtifactRecord`)."""
    cls = get_runner(name)
    if cls.format != entry.format:
        raise RunnerError(f"runner {name} runs {cls.format} artifacts, not {entry.format}")
    return cls(spec, Path(root) / entry.path, input_layout=entry.input_layout, threads=threads)
