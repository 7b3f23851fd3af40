"""The build record, `<out>/<model>/build.json`: which artifacts a build made, from which spec and
tools, with each artifact's I/O contract. Read and written only here: `BuildRecord.load` finds,
parses and checks it (model id, spec hash) and raises `BuildRecordError` — the one error every
command reports for a missing, corrupt or stale record; `save` writes it atomically."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import FileFormatError
from .files import read_json, sha256_path, write_json_atomic

RECORD = "build.json"
PULLED_MANIFEST = "manifest.json"   # what `meshport pull` writes beside the artifacts
_CORE = ("path", "format", "precision", "sha256", "bytes", "inputs", "outputs")


class BuildRecordError(FileFormatError):
    """A build directory or its build.json is missing, corrupt, for another model or another spec."""


@dataclass(frozen=True)
class TensorRecord:
    """One input or output of a built artifact as the artifact declares it (batch fixed, layout
    of the artifact: NHWC for TFLite images)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TensorRecord":
        return cls(str(d["name"]), tuple(int(s) for s in d["shape"]), str(d.get("dtype") or "float32"),
                   d.get("layout"))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}


@dataclass(frozen=True)
class ArtifactRecord:
    """One artifact of a build. `details` holds what its step recorded (step, options, parity,
    seconds, gpu_check, cache_key …), kept verbatim."""

    path: str
    format: str
    precision: str
    sha256: str
    bytes: int
    inputs: tuple[TensorRecord, ...] = ()
    outputs: tuple[TensorRecord, ...] = ()
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ArtifactRecord":
        return cls(str(d["path"]), str(d["format"]), str(d["precision"]), str(d.get("sha256", "")),
                   int(d.get("bytes", 0)), tuple(TensorRecord.from_json(t) for t in d.get("inputs") or ()),
                   tuple(TensorRecord.from_json(t) for t in d.get("outputs") or ()),
                   {k: v for k, v in d.items() if k not in _CORE})

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "precision": self.precision, "sha256": self.sha256,
                "bytes": self.bytes, "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs], **self.details}

    @property
    def key(self) -> tuple[str, str]:
        return self.format, self.precision

    @property
    def input_layout(self) -> str | None:
        """Layout of the first (image) input as built, e.g. "NHWC"; None when it has none."""
        return self.inputs[0].layout if self.inputs else None

    def get(self, name: str, default: Any = None) -> Any:
        """A step-recorded detail (e.g. "gpu_check", "cache_key")."""
        return self.details.get(name, default)


@dataclass(frozen=True)
class BuildRecord:
    model: str
    spec_sha256: str
    tool_versions: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[ArtifactRecord, ...] = ()
    root: Path | None = field(default=None, compare=False)    # the directory the record lives in

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, build_dir: Path | str, spec: Any) -> "BuildRecord":
        """The record of `spec.id` under `build_dir` (the `--out` of a build, or the model's own
        directory), checked to be that model's and made from that spec (`spec.sha256()`)."""
        build_dir = Path(build_dir)
        model = spec.id
        for root in (build_dir / model, build_dir):
            path = root / RECORD
            if path.is_file():
                record = cls.read(path)
                if record.model != model:
                    if root == build_dir / model:
                        raise BuildRecordError(f"{path} is a build record of {record.model!r}, not {model!r}")
                    continue
                want = spec.sha256()
                if record.spec_sha256 != want:
                    raise BuildRecordError(f"{path} was built from another spec of {model} (spec sha256 "
                                           f"{record.spec_sha256[:12]} ≠ {want[:12]}); rebuild it with "
                                           f"`meshport build {model} --out {build_dir}`")
                return record
        pulled = cls.from_pulled(build_dir, spec)
        if pulled is not None:
            return pulled
        raise BuildRecordError(f"no build record of {model} under {build_dir} (looked for "
                               f"{build_dir / model / RECORD}); run `meshport build {model} --out {build_dir}` first")

    @classmethod
    def from_pulled(cls, pulled_dir: Path | str, spec: Any) -> "BuildRecord | None":
        """The record of `spec.id` that a pulled version (`meshport pull` output: manifest.json
        beside the artifacts) amounts to — the artifacts of the manifest that are on disk — or None
        when `pulled_dir` holds no pulled version. A pipeline bundle's component lies in its own
        subdirectory (`<dir>/<model>/`, its manifest paths prefixed with it)."""
        pulled_dir = Path(pulled_dir)
        path = pulled_dir / PULLED_MANIFEST
        if not path.is_file():
            return None
        doc = read_json(path, "pulled manifest", BuildRecordError)
        model = spec.id
        try:
            components = {c["model"]: c for c in (doc.get("components") or {}).values()}
            if doc.get("model") == model:
                source, root, prefix = doc.get("source") or {}, pulled_dir, ""
            elif model in components:
                source, root, prefix = components[model], pulled_dir / model, f"{model}/"
            else:
                have = ", ".join([str(doc.get("model"))] + sorted(components))
                raise BuildRecordError(f"{path} is a pulled version of {have}, not of {model}")
            rows = [dict(a, path=a["path"][len(prefix):]) for a in doc["artifacts"]
                    if a["path"].startswith(prefix) and (not prefix or a.get("component") == model)]
            record = cls(model, str(source.get("spec_sha256", "")), dict(doc.get("tool_versions") or {}),
                         tuple(ArtifactRecord.from_json(a) for a in rows), root)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BuildRecordError(f"corrupt pulled manifest {path}: {type(exc).__name__}: {exc}") from None
        if record.spec_sha256 != spec.sha256():
            raise BuildRecordError(f"{path} was published from another spec of {model} (spec sha256 "
                                   f"{record.spec_sha256[:12]} ≠ {spec.sha256()[:12]}); pull a version made "
                                   f"with this Meshport")
        present = tuple(a for a in record.artifacts if (root / a.path).exists())
        if not present:
            raise BuildRecordError(f"{pulled_dir} holds none of the {model} artifacts its manifest lists")
        return cls(record.model, record.spec_sha256, record.tool_versions, present, root)

    @classmethod
    def read(cls, path: Path | str) -> "BuildRecord":
        """Parse one build.json without checking whose it is."""
        path = Path(path)
        data = read_json(path, "build record", BuildRecordError)
        try:
            if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
                raise ValueError("no artifact list")
            return cls(str(data["model"]), str(data.get("spec_sha256", "")), dict(data.get("tool_versions") or {}),
                       tuple(ArtifactRecord.from_json(a) for a in data["artifacts"]), path.parent)
        except (KeyError, TypeError, ValueError) as exc:
            raise BuildRecordError(f"corrupt build record {path}: {type(exc).__name__}: {exc}") from None

    @classmethod
    def read_or_empty(cls, root: Path | str, model: str) -> "BuildRecord":
        """The record in `root` if there is a readable one of `model`, else an empty one (a build
        starting over)."""
        try:
            record = cls.read(Path(root) / RECORD)
        except BuildRecordError:
            return cls(model, "", root=Path(root))
        return record if record.model == model else cls(model, "", root=Path(root))

    # -- writing ---------------------------------------------------------------------------------
    def save(self, root: Path | str | None = None) -> Path:
        root = Path(root) if root is not None else self.root
        if root is None:
            raise BuildRecordError(f"build record of {self.model} has no directory to be saved in")
        path = root / RECORD
        write_json_atomic(path, self.to_json())
        return path

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "spec_sha256": self.spec_sha256, "tool_versions": self.tool_versions,
                "artifacts": [a.to_json() for a in self.artifacts]}

    # -- queries ---------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        if self.root is None:
            raise BuildRecordError(f"build record of {self.model} was not read from a directory")
        return self.root / RECORD

    def file(self, artifact: ArtifactRecord) -> Path:
        """Where an artifact of this record lies."""
        if self.root is None:
            raise BuildRecordError(f"build record of {self.model} was not read from a directory")
        return self.root / artifact.path

    def by_path(self) -> dict[str, ArtifactRecord]:
        return {a.path: a for a in self.artifacts}

    def select(self, formats: Iterable[str] | None = None,
               precisions: Iterable[str] | None = None) -> list[ArtifactRecord]:
        fs = set(formats) if formats else None
        ps = set(precisions) if precisions else None
        return [a for a in self.artifacts if (fs is None or a.format in fs) and (ps is None or a.precision in ps)]

    def artifact(self, fmt: str, precision: str) -> ArtifactRecord:
        for a in self.artifacts:
            if a.key == (fmt, precision):
                return a
        have = ", ".join(f"{a.format}/{a.precision}" for a in self.artifacts) or "none"
        raise BuildRecordError(f"the build of {self.model} has no {fmt}/{precision} artifact (it has: {have}); "
                               f"run `meshport build {self.model} --formats {fmt} --precisions {precision}`")

    def intact(self, artifact: ArtifactRecord) -> bool:
        """Whether the artifact's file is there with the content recorded."""
        p = self.file(artifact)
        return p.exists() and sha256_path(p) == artifact.sha256
