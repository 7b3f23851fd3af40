"""Running pulled artifacts in an app's Python: no zoo, no torch.

    from meshport.runtime import FacePipeline
    pipeline = FacePipeline.from_pulled("pulled/", format="tflite", precision="fp16")
    result = pipeline.process(image)          # (h, w, 3) uint8 RGB → faces with 478 landmarks

`from_pulled` reads a pulled face-pipeline bundle (`meshport pull face_pipeline@1.0.0 -o pulled/`):
the pipeline block it was validated under, the pair of artifacts for the asked target, and each
network's I/O contract; it checks both files against the manifest and runs them on any runner
of the format (TFLite CPU or GPU, ONNX Runtime, Core ML / MIL)."""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from modelzoo.photo.contract import (ContractSpec, PipelineContractError, check_contract, pipeline_options)
from modelzoo.photo.networks import RunnerNetwork, default_runner
from modelzoo.photo.pipeline import FacePipeline as _FacePipeline
from modelzoo.photo.pipeline import FaceTracker, PhotoResult
from runtime.errors import IntegrityError, MissingFileError
from runtime.files import sha256_path
from runtime.record import PULLED_MANIFEST, ArtifactRecord
from runtime.runners import get_runner, runner_for

__all__ = ["FacePipeline", "FaceTracker", "PhotoResult", "PipelineContractError"]


class FacePipeline(_FacePipeline):
    """The photo pipeline (detector → ROI → landmark model) on a pulled bundle's artifacts.
    Close it (or use it as a context manager) to release the runtimes."""

    manifest: dict[str, Any]
    target: str

    @classmethod
    def from_pulled(cls, path: Path | str, format: str = "tflite", precision: str = "fp16", *,
                    runtime: str | None = None, threads: int | None = None, **options: Any) -> "FacePipeline":
        root = Path(path)
        mpath = root / PULLED_MANIFEST
        if not mpath.is_file():
            raise MissingFileError(f"no {PULLED_MANIFEST} in {root}; pull a face-pipeline bundle there first")
        try:
            manifest = json.loads(mpath.read_text())
        except ValueError as exc:
            raise IntegrityError(f"{mpath} is not JSON: {exc}") from None
        block = check_contract(manifest.get("pipeline"), str(mpath))
        target = f"{format}/{precision}"
        pair = (block.get("pairing") or {}).get(target)
        if pair is None:
            have = ", ".join(sorted(block.get("pairing") or {})) or "none"
            left = {x["target"]: x["reason"] for x in block.get("excluded") or []}
            why = f" ({target} was not shipped: {left[target]})" if target in left else ""
            raise PipelineContractError(f"{mpath}: no {target} pair in this bundle{why}; it ships: {have}")
        stack = ExitStack()
        try:
            networks = []
            for role in ("detector", "landmarks"):
                model = block[role]["model"]
                fmt, prec = pair[role].split("/")
                row = _artifact_row(manifest, model, fmt, prec, mpath)
                entry = ArtifactRecord.from_json(row)
                _check_file(root / entry.path, entry, mpath)
                spec = ContractSpec.from_io_contract(model, manifest["components"][role]["io_contract"])
                name = runtime if runtime is not None and get_runner(runtime).format == fmt else default_runner(fmt)
                networks.append(RunnerNetwork(stack.enter_context(runner_for(name, spec, root, entry,
                                                                             threads=threads))))
            pipeline = cls(*networks, **{**pipeline_options(block), **options})
        except BaseException:
            stack.close()
            raise
        pipeline._stack, pipeline.manifest, pipeline.target = stack, manifest, target
        return pipeline

    @property
    def runners(self) -> tuple[str, str]:
        """Names of the runners of the detector and the landmark model."""
        return self.detector.runner.name, self.landmarker.runner.name

    def close(self) -> None:
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()

    def __enter__(self) -> "FacePipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _artifact_row(manifest: dict[str, Any], model: str, fmt: str, prec: str, where: Path) -> dict[str, Any]:
    for a in manifest.get("artifacts") or []:
        if a.get("component") == model and a.get("format") == fmt and a.get("precision") == prec:
            return a
    raise PipelineContractError(f"{where} pairs {model} {fmt}/{prec} but lists no such artifact")


def _check_file(path: Path, entry: ArtifactRecord, where: Path) -> None:
    if not path.exists():
        raise MissingFileError(f"{path} is not here; pull the bundle with this format and precision "
                               f"(`meshport pull ... --format {entry.format}`)")
    if sha256_path(path) != entry.sha256:
        raise IntegrityError(f"{path}: sha256 ≠ {where} (modified after pull)")

