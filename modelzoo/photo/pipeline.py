"""From a photo to 478 landmarks per face: detector → ROI → landmark model → image pixels.

The two networks are plain callables (NCHW float32 batch → dict of NumPy outputs), so the
same pipeline runs PyTorch modules or any compiled artifact through a runner. Static mode
(`FacePipeline.process`) detects on every image, like MediaPipe's FaceMesh with
static_image_mode=True; `FaceTracker` follows faces across frames from their landmarks and
falls back to detection when a face flag drops."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from runtime.errors import UsageError
from ..face_detector.postprocess import Detection, detect
from .roi import Roi, axis_aligned_iou, detection_roi, landmarks_roi, letterbox_roi
from .warp import BORDER_REPLICATE, BORDER_ZERO, crop_tensor

Network = Callable[[np.ndarray], dict[str, np.ndarray]]

# MediaPipe's thresholds: detection score, weighted-NMS IoU, face presence, track association.
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
MIN_FACE_FLAG = 0.5
TRACK_IOU = 0.5


@dataclass
class Face:
    box: np.ndarray            # (4,) x0, y0, x1, y1 image pixels: the detection's (static mode), the
                               # landmarks' bounding box (tracking)
    score: float               # detection score (of the detection that started the track)
    face_flag: float
    landmarks: np.ndarray      # (478, 3) image pixels, z scaled like x
    roi: Roi
    regions: dict[str, np.ndarray] = field(default_factory=dict)   # region outputs, image pixels
    keypoints: np.ndarray | None = None                          # (6, 2) detector keypoints, image pixels

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))

    def to_json(self, decimals: int = 3) -> dict:
        return {"box": [round(float(v), decimals) for v in self.box], "score": round(self.score, 6),
                "face_flag": round(self.face_flag, 6),
                "landmarks": np.round(self.landmarks, decimals).tolist()}


@dataclass
class PhotoResult:
    image_size: tuple[int, int]     # (w, h)
    faces: list[Face]
    detections: list[Detection]     # every detection after NMS, image pixels, best first

    def to_json(self) -> dict:
        return {"image_size": list(self.image_size), "faces": [f.to_json() for f in self.faces]}


class FacePipeline:
    """Detector + landmark model on whole images (static mode: detect every image)."""

    def __init__(self, detector: Network, landmarker: Network, *, detector_size: int = 128,
                 landmark_size: int = 192, min_score: float = MIN_DETECTION_SCORE, nms_iou: float = NMS_IOU,
                 min_face_flag: float = MIN_FACE_FLAG, max_faces: int | None = None):
        if max_faces is not None and max_faces < 1:
            raise UsageError(f"max_faces must be ≥ 1 or None, not {max_faces}")
        self.detector, self.landmarker = as_network(detector), as_network(landmarker)
        self.detector_size, self.landmark_size = detector_size, landmark_size
        self.min_score, self.nms_iou = min_score, nms_iou
        self.min_face_flag, self.max_faces = min_face_flag, max_faces

    # -- the steps --------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces found by the detector, image pixels, best score first (at most max_faces)."""
        h, w = image.shape[:2]
        roi = letterbox_roi((w, h))
        s = self.detector_size
        out = self.detector(crop_tensor(image, roi, (s, s), border=BORDER_ZERO))
        dets = detect(out, self.min_score, self.nms_iou)
        dets = [d.mapped(lambda p: roi.to_image(p, (s, s))) for d in dets]
        return dets[: self.max_faces] if self.max_faces else dets

    def crop(self, image: np.ndarray, roi: Roi) -> np.ndarray:
        """The landmark model's input for one ROI: (1,3,s,s) float32 in [0,1], border replicated."""
        s = self.landmark_size
        return crop_tensor(image, roi, (s, s), border=BORDER_REPLICATE)

    def landmarks(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
        """(478,3) landmarks in image pixels, the face flag, and region outputs for one ROI."""
        s = self.landmark_size
        out = self.landmarker(self.crop(image, roi))
        lm = roi.to_image(np.asarray(out["landmarks"][0], np.float64), (s, s))
        regions = {k: roi.to_image(np.asarray(v[0], np.float64), (s, s)) for k, v in out.items()
                   if k not in ("landmarks", "face_flag") and np.ndim(v) == 3 and np.shape(v)[-1] == 2}
        return lm, float(np.asarray(out["face_flag"]).reshape(-1)[0]), regions

    # -- static mode ------------------------------------------------------------------------
    def process(self, image: np.ndarray) -> PhotoResult:
        """Every face of one image, largest box first."""
        image = _check_image(image)
        dets = self.detect(image)
        faces = []
        for d in dets:
            roi = detection_roi(d.box, d.keypoints)
            lm, flag, regions = self.landmarks(image, roi)
            if flag >= self.min_face_flag:
                faces.append(Face(d.box, d.score, flag, lm, roi, regions, d.keypoints))
        faces.sort(key=lambda f: -f.area)
        return PhotoResult((image.shape[1], image.shape[0]), faces, dets)


class FaceTracker:
    """Video mode: the previous frame's landmarks give this frame's ROIs; the detector runs
    only while fewer than `max_faces` faces are tracked, and its ROIs that overlap a tracked
    face (IoU > 0.5, rotation ignored) give way to the track."""

    def __init__(self, pipeline: FacePipeline, max_faces: int = 1):
        if max_faces < 1:
            raise UsageError(f"max_faces must be ≥ 1, not {max_faces}")
        self.pipeline, self.max_faces = pipeline, max_faces
        self.tracks: list[tuple[Roi, float]] = []     # (roi, detection score)
        self.detector_runs = 0

    def reset(self) -> None:
        self.tracks = []

    def process(self, image: np.ndarray) -> PhotoResult:
        image = _check_image(image)
        p = self.pipeline
        candidates: list[tuple[Roi, float, np.ndarray | None]] = []
        dets: list[Detection] = []
        if len(self.tracks) < self.max_faces:
            self.detector_runs += 1
            dets = p.detect(image)[: self.max_faces]
            candidates = [(detection_roi(d.box, d.keypoints), d.score, d.keypoints) for d in dets]
        for roi, score in self.tracks:              # tracked faces win over overlapping detections
            candidates = [c for c in candidates if axis_aligned_iou(c[0], roi) <= TRACK_IOU]
            candidates.append((roi, score, None))
        faces, tracks = [], []
        for roi, score, kps in candidates[-self.max_faces:]:
            lm, flag, regions = p.landmarks(image, roi)
            if flag < p.min_face_flag:
                continue                           # lost: the next frame detects again
            xy = lm[:, :2]
            box = np.concatenate([xy.min(0), xy.max(0)])
            faces.append(Face(box, score, flag, lm, roi, regions, kps))
            tracks.append((landmarks_roi(lm), score))
        self.tracks = tracks
        faces.sort(key=lambda f: -f.area)
        return PhotoResult((image.shape[1], image.shape[0]), faces, dets)


class TorchNetwork:
    """A PyTorch module (a zoo model from `modelzoo.load_model`) as the pipeline's network
    callable: NumPy batch in, NumPy outputs out, no autograd."""

    def __init__(self, module):
        self.module = module.eval()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch
        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        if not isinstance(out, dict):
            raise UsageError(f"{type(self.module).__name__} returns {type(out).__name__}; the pipeline needs a "
                             "network returning a dict of named outputs (a zoo model)")
        return {k: v.detach().numpy() for k, v in out.items()}


def as_network(net) -> Network:
    """`net` as a pipeline network: callables taking and returning NumPy stay as they are; a
    torch module (it has `parameters` and `forward`) is wrapped; None stays None (a pipeline
    used only to detect)."""
    if net is None:
        return None
    if hasattr(net, "parameters") and hasattr(net, "forward"):
        return TorchNetwork(net)
    if not callable(net):
        raise UsageError(f"a pipeline network must be callable, not {type(net).__name__}")
    return net


def _check_image(image: np.ndarray) -> np.ndarray:
    from ..errors import InputContractError

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputContractError(f"expected an (h, w, 3) uint8 RGB image, got {desc}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputContractError(f"empty image {image.shape}")
    return np.ascontiguousarray(image)
