"""`meshport predict`: a zoo model on a photo (detector → ROI → landmarks) or on a face crop;
landmarks as data and an overlay picture."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

import modelzoo
from runtime.errors import UsageError
from modelzoo.data import SAMPLE_FACE, SAMPLE_PHOTO
from modelzoo.errors import InputContractError
from modelzoo.photo import PhotoResult, load_image

SAMPLE_CROP = SAMPLE_FACE
__all__ = ["SAMPLE_CROP", "SAMPLE_PHOTO", "CropPrediction", "detections_json", "draw_crop_overlay",
           "draw_photo_overlay", "load_image", "predict_crop"]

_COLORS = {"mesh": (200, 200, 200), "lips": (255, 60, 60), "left_eye": (60, 220, 60),
           "right_eye": (60, 220, 60), "left_iris": (60, 140, 255), "right_iris": (60, 140, 255),
           "box": (255, 200, 0), "roi": (0, 200, 255), "keypoint": (255, 0, 255)}


@dataclass
class CropPrediction:
    model: str
    image_size: tuple[int, int]
    landmarks: np.ndarray          # (478,3) in image pixels (z scaled like x)
    face_flag: float
    regions: dict[str, np.ndarray]  # region name -> (K,2) image pixels

    def to_json(self) -> dict:
        return {"model": self.model, "image_size": list(self.image_size), "face_flag": self.face_flag,
                "landmarks": self.landmarks.round(4).tolist(),
                "regions": {k: v.round(4).tolist() for k, v in self.regions.items()}}


def predict_crop(model_id: str, image: np.ndarray, model: torch.nn.Module | None = None,
                 cache_dir=None) -> CropPrediction:
    """Treat the whole image as the face crop: resize to the model input, run, scale back."""
    spec = modelzoo.get_spec(model_id)
    inp = spec.inputs[0]
    if inp.layout != "NCHW" or inp.channel_order != "RGB" or spec.landmarks is None:
        raise InputContractError(f"{model_id} is not a landmark model taking an RGB face crop ({inp.describe()})")
    size = inp.shape[-1]
    if model is None:
        model = modelzoo.load_model(model_id, pretrained=True, cache_dir=cache_dir)
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    arr = np.asarray(pil.resize((size, size), Image.BILINEAR) if (w, h) != (size, size) else pil)
    x = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        out = model(x)
    sx, sy = w / size, h / size
    lm = out["landmarks"][0].numpy().astype(np.float64) * np.array([sx, sy, sx])
    regions = {k: out[k][0].numpy().astype(np.float64) * np.array([sx, sy])
               for k in ("lips", "left_eye", "right_eye", "left_iris", "right_iris") if k in out}
    return CropPrediction(model_id, (w, h), lm, float(out["face_flag"][0, 0]), regions)


def detections_json(result: PhotoResult) -> dict:
    """What `predict face_detector` writes: every detection, largest box first."""
    dets = sorted(result.detections, key=lambda d: -float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
    return {"image_size": list(result.image_size),
            "faces": [{"box": np.round(d.box, 3).tolist(), "score": round(d.score, 6),
                       "keypoints": np.round(d.keypoints, 3).tolist()} for d in dets]}


class _Canvas:
    """The image upscaled so small pictures stay readable, with point and line helpers."""

    def __init__(self, image: np.ndarray, min_side: int = 576):
        h, w = image.shape[:2]
        self.scale = max(1.0, min_side / min(w, h))
        self.im = Image.fromarray(image).resize((round(w * self.scale), round(h * self.scale)), Image.BILINEAR)
        self.d = ImageDraw.Draw(self.im)
        self.r = max(1.0, min(self.scale * 0.6, 2.0))

    def dots(self, points: np.ndarray, color: tuple[int, int, int], r: float | None = None) -> None:
        r = r or self.r
        for x, y in np.asarray(points)[:, :2] * self.scale:
            self.d.ellipse([x - r, y - r, x + r, y + r], fill=color)

    def polygon(self, points: np.ndarray, color: tuple[int, int, int]) -> None:
        pts = [tuple(p) for p in np.asarray(points)[:, :2] * self.scale]
        self.d.line(pts + pts[:1], fill=color, width=2)


def draw_crop_overlay(image: np.ndarray, pred: CropPrediction, min_side: int = 576) -> Image.Image:
    c = _Canvas(image, min_side)
    c.dots(pred.landmarks[:468], _COLORS["mesh"])
    for name, pts in pred.regions.items():
        c.dots(pts, _COLORS[name])
    return c.im


def draw_photo_overlay(image: np.ndarray, result: PhotoResult, min_side: int = 576) -> Image.Image:
    """Detections (boxes, keypoints), crop regions and every face's landmarks over the photo."""
    c = _Canvas(image, min_side)
    for d in result.detections:
        x0, y0, x1, y1 = d.box
        c.polygon(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), _COLORS["box"])
        c.dots(d.keypoints, _COLORS["keypoint"], r=c.r * 1.5)
    for f in result.faces:
        c.polygon(f.roi.corners(), _COLORS["roi"])
        c.dots(f.landmarks[:468], _COLORS["mesh"])
        for name, pts in f.regions.items():
            c.dots(pts, _COLORS.get(name, _COLORS["mesh"]))
    return c.im


@dataclass
class FramePrediction:
    path: str
    image: np.ndarray
    data: dict                      # the JSON of this image
    summary: list[str]              # human-readable lines
    overlay: Callable[[], Image.Image]


def predict_images(model_id: str, paths: list, *, crop: bool = False, track: bool = False, build=None,
                   fmt: str = "pytorch", precision: str = "fp32", runtime: str | None = None,
                   threads: int | None = None, cache_dir=None, max_faces: int | None = None,
                   detector: str | None = None) -> list[FramePrediction]:
    """`meshport predict` on one or more images: whole photos through the detector → landmark
    pipeline (each image on its own, or as consecutive video frames with `track`), the
    detector alone when `model_id` is a detector, or each image as a ready face crop with `crop`.
    `detector` (one of DETECTORS; default face_detector) finds the faces."""
    from contextlib import ExitStack

    from modelzoo.photo import FaceTracker
    from modelzoo.photo.networks import DETECTOR, DETECTORS, open_pipeline

    modelzoo.get_spec(model_id)                      # unknown model: fail before reading anything
    if detector is not None and detector not in DETECTORS:
        raise UsageError(f"unknown detector {detector}; valid: {', '.join(DETECTORS)}")
    detector_only = model_id in DETECTORS
    if detector_only and detector not in (None, model_id):
        raise UsageError(f"{model_id} is itself a detector; --detector {detector} would not be used")
    detector = model_id if detector_only else (detector or DETECTOR)
    if crop and track:
        raise UsageError("--track follows faces across photos; it cannot be combined with --crop")
    if track and detector_only:
        raise UsageError("--track needs a landmark model (tracking follows landmarks)")
    frames = []
    with ExitStack() as stack:
        pipe = tracker = None
        if not crop:
            landmark_model = "attention_mesh" if detector_only else model_id
            pipe = open_pipeline(stack, landmark_model, build=build, fmt=fmt, precision=precision, runtime=runtime,
                                 threads=threads, cache_dir=cache_dir, max_faces=max_faces, detector=detector)
            tracker = FaceTracker(pipe, max_faces=max_faces or 1) if track else None
        model = modelzoo.load_model(model_id, pretrained=True, cache_dir=cache_dir) if crop else None
        where = f"{fmt}/{precision}" if fmt != "pytorch" else "pytorch"
        for path in paths:
            image = load_image(path)
            h, w = image.shape[:2]
            if crop:
                pred = predict_crop(model_id, image, model=model)
                frames.append(FramePrediction(str(path), image, pred.to_json(), [
                    f"{model_id} on {path} ({w}×{h}) as a face crop: face flag {pred.face_flag:.4f}, "
                    f"{len(pred.landmarks)} landmarks"], lambda image=image, pred=pred: draw_crop_overlay(image, pred)))
                continue
            if detector_only:
                result = PhotoResult((w, h), [], pipe.detect(image))
                data = detections_json(result)
            else:
                result = (tracker or pipe).process(image)
                data = result.to_json()
            lines = [f"{model_id} on {path} ({w}×{h}, {where}): {len(data['faces'])} face(s)"]
            lines += [f"  face {i}: box {np.round(f['box'], 1).tolist()} score {f['score']:.3f}"
                      + (f" face flag {f['face_flag']:.3f}" if "face_flag" in f else "")
                      for i, f in enumerate(data["faces"])]
            frames.append(FramePrediction(str(path), image, data, lines,
                                          lambda image=image, result=result: draw_photo_overlay(image, result)))
        if tracker is not None and frames:
            frames[-1].summary.append(f"tracking: the detector ran on {tracker.detector_runs} of {len(frames)} frames")
    return frames
