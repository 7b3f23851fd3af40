"""Conversion steps: pure functions artifact → artifact, registered by name, with a build record.

Steps never mutate their inputs, never write outside their output path, and write atomically
(temp file in the destination directory, then rename)."""
from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from runtime.errors import MeshportError, RegistryError
from runtime.registry import Registry
from runtime.files import sha256_path, size_path


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


Target = tuple[str, str]          # (format, precision)


@dataclass(frozen=True)
class StepInputs:
    """What a step may read: the PyTorch model, its spec and the artifacts it declared it needs
    (target → path, made by earlier steps)."""

    model: Any
    spec: Any
    artifacts: dict[Target, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """A conversion step: one signature for all, `run(inputs, outputs, options) → [Artifact]` with
    `outputs` the target → path of what to make this time (a subset of `makes`). It declares the
    targets it makes (with their file suffix), the artifacts it needs and the options it takes;
    the build's plan is derived from these declarations, so a new format is one registered step."""

    name: str
    makes: dict[Target, str]
    run: Callable[[StepInputs, dict[Target, Path], dict[str, Any]], list[Artifact]]
    needs: tuple[Target, ...] = ()
    options: tuple[str, ...] = ()

    def __call__(self, inputs: StepInputs, outputs: dict[Target, Path], options: dict[str, Any] | None = None
                 ) -> list[Artifact]:
        unknown = set(outputs) - set(self.makes)
        if unknown:
            raise ConversionError(self.name, f"does not make {sorted(unknown)}; it makes {sorted(self.makes)}")
        missing = [t for t in self.needs if t not in inputs.artifacts]
        if missing:
            raise ConversionError(self.name, f"needs {', '.join(f'{f}/{p}' for f, p in missing)} first")
        bad = set(options or {}) - set(self.options)
        if bad:
            raise ConversionError(self.name, f"takes no option {', '.join(sorted(bad))} "
                                             f"(options: {', '.join(self.options) or 'none'})")
        arts = {(a.format, a.precision): a for a in self.run(inputs, outputs, dict(options or {}))}
        if set(arts) != set(outputs):
            raise ConversionError(self.name, f"made {sorted(arts)}, asked for {sorted(outputs)}")
        return [arts[t] for t in outputs]


_STEPS: Registry[Step] = Registry("conversion step")


def register_step(step: Step) -> Step:
    taken = {t: s.name for s in _STEPS.values() for t in s.makes}
    clash = sorted(t for t in step.makes if t in taken)
    if clash:
        raise RegistryError(f"step {step.name!r} would make {clash}, already made by {taken[clash[0]]!r}")
    return _STEPS.add(step.name, step)


def get_step(name: str) -> Step:
    return _STEPS.get_known(name)


def list_steps() -> list[Step]:
    return [_STEPS[k] for k in sorted(_STEPS)]


TOOLS = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "coremltools", "numpy")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out
