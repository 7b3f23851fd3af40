"""The detectors' decoding and suppression import no torch (a runtime for pulled artifacts uses
them without it); the PyTorch models load only when asked for."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> dict:
    script = code + "\nimport json, sys\nprint(json.dumps({'torch': 'torch' in sys.modules, " \
                    "'model': 'modelzoo.face_detector.model' in sys.modules}))"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_anchors_postprocess_spec_and_the_package_import_no_torch():
    got = _modules_after("import modelzoo.face_detector, modelzoo.face_detector.anchors, "
                         "modelzoo.face_detector.postprocess, modelzoo.face_detector.spec\n"
                         "from modelzoo.face_detector import detect, anchor_centres, FULL_RANGE\n"
                         "from modelzoo.face_detector.spec import spec_full\n"
                         "import numpy as np\n"
                         "n = len(anchor_centres(FULL_RANGE)); assert spec_full().output('scores').shape == (None, n)\n"
                         "assert detect({'boxes': np.zeros((1, n, 4)), 'keypoints': np.zeros((1, n, 12)), "
                         "'scores': np.zeros((1, n))}) == []")
    assert got == {"torch": False, "model": False}


def test_the_check_sees_torch_when_a_model_is_asked_for():
    """The same probe reports torch once the PyTorch model is used (so the test above can fail)."""
    got = _modules_after("from modelzoo.face_detector import BlazeFaceFullRange")
    assert got["torch"] is True
    got = _modules_after("import modelzoo\nmodelzoo.load_model('face_detector', pretrained=False)")
    assert got == {"torch": True, "model": True}
