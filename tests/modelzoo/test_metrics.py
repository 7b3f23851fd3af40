"""The shared landmark metrics, by hand."""
from __future__ import annotations

import numpy as np

from modelzoo.metrics import inter_ocular_distance, landmark_errors, point_errors


def test_metrics_by_hand():
    a = np.zeros((478, 3))
    a[33, :2], a[263, :2] = (10.0, 20.0), (40.0, 60.0)              # IOD 50
    assert inter_ocular_distance(a) == 50.0 and inter_ocular_distance(a[None, :, :2]) == 50.0
    assert inter_ocular_distance(np.zeros((478, 3))) is None       # coincident corners
    assert inter_ocular_distance(np.zeros((468, 3))) is None       # not the 478 contract
    b = a.copy()
    b[0, :2] += (3.0, 4.0)                                         # one point 5 px off, z ignored
    b[1, 2] += 100.0
    np.testing.assert_allclose(point_errors(a, b)[:2], [5.0, 0.0])
    e = landmark_errors(a, b, 50.0)
    assert e["max_px"] == 5.0 and np.isclose(e["mean_px"], 5.0 / 478)
    assert np.isclose(e["mean_iod_pct"], 100 * (5.0 / 478) / 50.0)
    assert landmark_errors(a, b)["mean_iod_pct"] is None
