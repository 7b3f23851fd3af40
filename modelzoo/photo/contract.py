"""The photo pipeline's contract: what a face-pipeline bundle pins beside its two networks.

A bundle (`meshport release face_pipeline`) ships a detector and a landmark model that were
validated together, and this block: the pre- and post-processing the two networks were validated
under (crop rules, thresholds, ROI rules, input names and sizes). The runtime that runs a pulled
bundle (`meshport.runtime.FacePipeline.from_pulled`) rebuilds its pipeline from the block and
refuses one written for other rules, so an app never runs the networks under rules they were
not validated with. The block and the per-network I/O contracts are plain JSON: no zoo lookup,
no torch, at run time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.errors import FileFormatError

from ..spec import TensorSpec
from .pipeline import MIN_DETECTION_SCORE, MIN_FACE_FLAG, NMS_IOU
from .roi import DETECTION_ROTATION_KEYPOINTS, LANDMARK_ROTATION_POINTS, ROI_SCALE

CONTRACT = "meshport.face-pipeline/1"
PIPELINE = "face_pipeline"          # the store name of the pipeline bundle


class PipelineContractError(FileFormatError):
    """A bundle's pipeline block is missing, corrupt, or written for other processing rules."""


def _rules() -> dict[str, Any]:
    """The processing rules this code implements (compared with a bundle's, key by key)."""
    return {"roi_scale": ROI_SCALE, "detection_rotation_keypoints": list(DETECTION_ROTATION_KEYPOINTS),
            "tracking_rotation_points": list(LANDMARK_ROTATION_POINTS),
            "detector_crop": "letterbox to a square, zero border, bilinear",
            "landmark_crop": "rotated ROI, replicated border, bilinear",
            "image": "RGB uint8 (height, width, 3); network inputs NCHW float32 in [0, 1]"}


def pipeline_contract(detector_spec: Any, landmark_spec: Any) -> dict[str, Any]:
    """The pipeline block for two zoo specs (the detector's and the landmark model's)."""
    lm = landmark_spec.landmarks
    return {"contract": CONTRACT, "rules": _rules(),
            "detector": {"model": detector_spec.id, "input": detector_spec.inputs[0].name,
                         "input_size": int(detector_spec.inputs[0].shape[-1]), "min_score": MIN_DETECTION_SCORE,
                         "nms_iou": NMS_IOU},
            "landmarks": {"model": landmark_spec.id, "input": landmark_spec.inputs[0].name,
                          "input_size": int(landmark_spec.inputs[0].shape[-1]), "min_face_flag": MIN_FACE_FLAG,
                          "output": lm.output, "points": lm.points}}


def check_contract(block: Any, where: str) -> dict[str, Any]:
    """`block` if this code implements its rules, else PipelineContractError saying which differ."""
    if not isinstance(block, dict) or not isinstance(block.get("rules"), dict):
        raise PipelineContractError(f"{where} has no pipeline block; it is not a face-pipeline bundle")
    if block.get("contract") != CONTRACT:
        raise PipelineContractError(f"{where} is a {block.get('contract')!r} bundle; this Meshport runs "
                                    f"{CONTRACT!r} bundles")
    mine = _rules()
    differ = sorted(k for k in set(mine) | set(block["rules"]) if block["rules"].get(k) != mine.get(k))
    if differ:
        raise PipelineContractError(f"{where} was validated under other processing rules ({', '.join(differ)}); "
                                    f"run it with the Meshport version that published it")
    for role in ("detector", "landmarks"):
        if not isinstance(block.get(role), dict) or "model" not in block[role]:
            raise PipelineContractError(f"{where}: the pipeline block has no {role} entry")
    return block


def pipeline_options(block: dict[str, Any]) -> dict[str, Any]:
    """FacePipeline keyword arguments from a checked block."""
    d, lm = block["detector"], block["landmarks"]
    return {"detector_size": int(d["input_size"]), "landmark_size": int(lm["input_size"]),
            "min_score": float(d["min_score"]), "nms_iou": float(d["nms_iou"]),
            "min_face_flag": float(lm["min_face_flag"])}


@dataclass(frozen=True)
class ContractSpec:
    """A network's I/O contract as a runner's spec (inputs, outputs, `input(name)`), read from a
    manifest's `io_contract` instead of the zoo."""

    id: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_io_contract(cls, model: str, io: dict[str, Any]) -> "ContractSpec":
        def tensor(t: dict[str, Any]) -> TensorSpec:
            vr = t.get("value_range")
            return TensorSpec(str(t["name"]), tuple(None if d is None else int(d) for d in t["shape"]),
                              str(t.get("dtype") or "float32"), t.get("layout"), t.get("meaning") or "",
                              t.get("units") or "", (float(vr[0]), float(vr[1])) if vr else None,
                              t.get("channel_order"))
        try:
            return cls(model, tuple(tensor(t) for t in io["inputs"]), tuple(tensor(t) for t in io["outputs"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise PipelineContractError(f"corrupt I/O contract of {model}: {type(exc).__name__}: {exc}") from None

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)
