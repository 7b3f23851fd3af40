"""After the network: score threshold and MediaPipe's *weighted* non-max suppression
(NonMaxSuppressionCalculator, algorithm WEIGHTED, overlap IoU): the best remaining detection
absorbs every remaining one overlapping it by more than the threshold; its box and keypoints
become the score-weighted mean of the group, its score stays the best score."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    box: np.ndarray        # (4,) x0, y0, x1, y1
    keypoints: np.ndarray  # (6, 2) x, y
    score: float

    def mapped(self, fn) -> "Detection":
        """The detection with every point mapped by fn((K,2) → (K,2)); the box stays axis-aligned
        (the bounding box of its mapped corners)."""
        corners = fn(np.array([[self.box[0], self.box[1]], [self.box[2], self.box[1]],
                               [self.box[2], self.box[3]], [self.box[0], self.box[3]]], np.float64))
        box = np.concatenate([corners.min(0), corners.max(0)])
        return Detection(box, fn(self.keypoints.astype(np.float64)), self.score)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one [x0,y0,x1,y1] box with each row of `boxes`."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = 0.3) -> list[Detection]:
    """boxes (A,4), keypoints (A,K,2), scores (A,) of the candidates kept by the score
    threshold → detections, best first."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = (np.asarray(a, np.float64)[order] for a in (boxes, keypoints, scores))
    remaining = np.arange(len(scores))
    out: list[Detection] = []
    while remaining.size:
        best = remaining[0]
        overlap = iou(boxes[best], boxes[remaining]) > iou_threshold
        overlap[0] = True                      # a degenerate (zero-area) box still absorbs itself
        group = remaining[overlap]
        w = scores[group][:, None]
        total = w.sum()
        box = (boxes[group] * w).sum(0) / total
        kps = (keypoints[group] * w[:, :, None]).sum(0) / total
        out.append(Detection(box, kps, float(scores[best])))
        remaining = remaining[~overlap]
    return out


def detect(outputs: dict[str, np.ndarray], min_score: float = 0.5, iou_threshold: float = 0.3,
           index: int = 0) -> list[Detection]:
    """Detections of batch item `index` of a face_detector's outputs, in its input pixels."""
    scores = np.asarray(outputs["scores"][index], np.float64).reshape(-1)
    boxes = np.asarray(outputs["boxes"][index], np.float64).reshape(-1, 4)
    kps = np.asarray(outputs["keypoints"][index], np.float64).reshape(len(scores), -1, 2)
    if not (len(boxes) == len(kps) == len(scores)):
        raise ValueError(f"detector outputs disagree on the anchor count: {len(boxes)}, {len(kps)}, {len(scores)}")
    # MediaPipe drops decoded boxes with a negative (or NaN) width or height before NMS.
    size = boxes[:, 2:] - boxes[:, :2]
    keep = (scores >= min_score) & np.all(size >= 0, axis=1)
    return weighted_nms(boxes[keep], kps[keep], scores[keep], iou_threshold)
