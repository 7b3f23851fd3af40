"""Conversion steps: pure functions artifact → artifact, registered by name, with a build record.

Steps never mutate their inputs, never write outside their output path, and write atomically
(temp file in the destination directory, then rename)."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from modelzoo.errors import MeshportError, RegistryError


class ConversionError(MeshportError):
    """A conversion step failed; the message names the step and, where known, the node/op."""

    def __init__(self, step: str, message: str, node: str | None = None):
        self.step, self.node = step, node
        where = f" at {node}" if node else ""
        super().__init__(f"[{step}]{where}: {message}")


@dataclass(frozen=True)
class IOSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str | None = None


def static_shape(shape: tuple[int | None, ...]) -> tuple[int, ...]:
    """A spec shape with the dynamic batch fixed to 1 (artifacts are built for batch 1)."""
    return tuple(1 if d is None else d for d in shape)


def io_specs(spec, image_layout: str | None = None,
             input_dtype: str | None = None) -> tuple[tuple[IOSpec, ...], tuple[IOSpec, ...]]:
    """The artifact's I/O record from the model spec; `image_layout="NHWC"` records a 4-D NCHW
    input transposed to NHWC (TFLite), `input_dtype` overrides the input dtype."""
    ins = []
    for t in spec.inputs:
        shape, layout = static_shape(t.shape), t.layout
        if image_layout and image_layout != layout and len(shape) == 4 and layout == "NCHW":
            n, c, h, w = shape
            shape, layout = (n, h, w, c), image_layout
        ins.append(IOSpec(t.name, shape, input_dtype or t.dtype, layout))
    outs = tuple(IOSpec(t.name, static_shape(t.shape), t.dtype, t.layout) for t in spec.outputs)
    return tuple(ins), outs


@dataclass
class Artifact:
    path: Path
    format: str
    precision: str
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    sha256: str = ""
    bytes: int = 0
    record: dict[str, Any] = field(default_factory=dict)   # step, options, parity, seconds

    def finalize(self) -> "Artifact":
        self.sha256 = sha256_path(self.path)
        self.bytes = size_path(self.path)
        return self

    def to_json(self, root: Path) -> dict[str, Any]:
        return {"path": str(self.path.relative_to(root)), "format": self.format, "precision": self.precision,
                "sha256": self.sha256, "bytes": self.bytes,
                "inputs": [asdict(i) for i in self.inputs], "outputs": [asdict(o) for o in self.outputs],
                **self.record}


StepFn = Callable[..., Artifact]
_STEPS: dict[str, StepFn] = {}


def register_step(name: str) -> Callable[[StepFn], StepFn]:
    def wrap(fn: StepFn) -> StepFn:
        if name in _STEPS:
            raise RegistryError(f"conversion step {name!r} is already registered")
        _STEPS[name] = fn
        return fn
    return wrap


def get_step(name: str) -> StepFn:
    if name not in _STEPS:
        raise RegistryError(f"unknown conversion step {name!r}; known: {', '.join(sorted(_STEPS))}")
    return _STEPS[name]


def list_steps() -> list[str]:
    return sorted(_STEPS)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"step produced no {path.name}")
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(bytes.fromhex(sha256_path(p)))
        return h.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def size_path(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


TOOLS = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "coremltools", "numpy")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out
