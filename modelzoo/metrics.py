"""Landmark error metrics shared by the converters' quick gate, the validation suite, the
photo pipeline's comparisons and the store's self-tests (DESIGN §5): point distances in pixels
and the mean as a percentage of the inter-ocular distance. Which landmark pair and point count
a model's IOD uses is its spec's (`ModelSpec.landmarks`)."""
from __future__ import annotations

import numpy as np

# The outer eye corners and point count of the 478-point contract (DESIGN §2, §5): the
# defaults for callers that have no spec at hand; generic code passes the spec's.
IOD_INDICES = (33, 263)
MESH_POINTS = 478


def inter_ocular_distance(landmarks: np.ndarray, pair: tuple[int, int] = IOD_INDICES,
                          points: int = MESH_POINTS) -> float | None:
    """Distance between landmarks `pair` of one face's (points, 2|3) landmarks (any leading
    batch of one is accepted); None when the array is not one `points`-point face or the
    distance is 0."""
    pts = np.asarray(landmarks, np.float64)
    if pts.size not in (points * 2, points * 3):
        return None
    pts = pts.reshape(points, -1)
    d = float(np.linalg.norm(pts[pair[0], :2] - pts[pair[1], :2]))
    return d if d > 0 else None


def point_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-point 2-D distance (px) between two (..., K, ≥2) landmark arrays, flattened."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a.reshape(-1, a.shape[-1])[:, :2] - b.reshape(-1, b.shape[-1])[:, :2], axis=-1)


def landmark_errors(ref: np.ndarray, got: np.ndarray, iod: float | None = None) -> dict[str, float | None]:
    """max_px, mean_px and mean_iod_pct (None without an IOD) of `got` against `ref`."""
    e = point_errors(ref, got)
    return {"max_px": float(e.max()), "mean_px": float(e.mean()),
            "mean_iod_pct": float(100 * e.mean() / iod) if iod else None}
