"""report.html from a Validation built of real comparator results (synthetic outputs, no build):
the provenance header, the verdict table (failures first, each worst figure beside its bound),
the collapsed per-edge details, and the page as headless Chromium renders it."""
from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

import modelzoo
from runtime.record import ArtifactRecord, BuildRecord
from validation.inputs import InputCase
from validation.report import provenance, render_report, verdict_rows, write_report
from validation.validate import Validation, judge
from tests.validation.headless import SKIP_REASON, find_chromium, load

MODEL = "attention_mesh"
PASSING = "attention_mesh-fp32.tflite@tflite"      # sorts before FAILING by name: the order must come from verdicts
FAILING = "attention_mesh.onnx@onnxruntime"


def _validation(tmp_path, shift: float = 3.0) -> Validation:
    spec = modelzoo.get_spec(MODEL)
    rng = np.random.default_rng(0)
    cases = [InputCase("seeded-0", "seeded", rng.random((1, 3, 192, 192), dtype=np.float32)),
             InputCase("face-1", "face", rng.random((1, 3, 192, 192), dtype=np.float32))]

    def outputs():
        return {o.name: (rng.random((1,) + tuple(o.shape[1:]), dtype=np.float32) * (192 if len(o.shape) == 3 else 1))
                for o in spec.outputs}
    ref = {c.name: outputs() for c in cases}
    near = {c: {k: a + 1e-6 for k, a in o.items()} for c, o in ref.items()}
    # the ONNX candidate's landmarks off by `shift` px on the face only
    off = {c: {k: a + (shift if (c == "face-1" and k == "landmarks") else 1e-6) for k, a in o.items()}
           for c, o in ref.items()}
    entries = {PASSING: ArtifactRecord("attention_mesh-fp32.tflite", "tflite", "fp32", "0" * 64, 1),
               FAILING: ArtifactRecord("attention_mesh.onnx", "onnx", "fp32", "0" * 64, 1)}
    record = BuildRecord(MODEL, spec.sha256(), {"torch": "2.13.0", "onnx2tf": "1.29.24"}, tuple(entries.values()),
                         tmp_path)
    v = Validation(MODEL, tmp_path, cases, record=record)
    v.outputs = {"pytorch": ref, PASSING: near, FAILING: off}
    for rid, got in ((PASSING, near), (FAILING, off)):
        v.edges += judge(spec, "pytorch", rid, entries[rid], ref, got, cases)
    return v


class _Dom(HTMLParser):
    """The verdict rows (candidate, verdict, metric cells' text) and the <details> elements."""

    def __init__(self):
        super().__init__()
        self.rows, self.details, self.ids = [], [], set()
        self._in_verdicts, self._row, self._cell, self._depth = False, None, None, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table" and a.get("id") == "verdicts":
            self._in_verdicts = True
        elif tag == "details":
            self.details.append((a.get("data-candidate"), "open" in a))
        elif self._in_verdicts and tag == "tr" and "data-verdict" in a:
            self._row = {"candidate": a["data-candidate"], "verdict": a["data-verdict"], "metrics": {}}
        elif self._row is not None and tag == "td" and "data-metric" in a:
            self._cell = a["data-metric"]
            self._row["metrics"][self._cell] = ""

    def handle_endtag(self, tag):
        if tag == "table" and self._in_verdicts:
            self._in_verdicts = False
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._row is not None and self._cell is not None:
            self._row["metrics"][self._cell] += data


def _parse(doc: str) -> _Dom:
    p = _Dom()
    p.feed(doc)
    return p


def test_verdict_rows_put_failures_first_with_bounds_from_the_spec(tmp_path):
    from modelzoo.tolerances import resolve
    v = _validation(tmp_path)
    spec = modelzoo.get_spec(MODEL)
    rows = verdict_rows(v, spec)
    assert [(r["candidate"], r["passed"]) for r in rows] == [(FAILING, False), (PASSING, True)]
    assert rows[0]["failing_inputs"] == ["face-1"]
    px = rows[0]["worst"]["max_px"]
    assert px["bound"] == resolve(spec, "onnx", "fp32", "landmarks").max_px
    assert px["figure"] == pytest.approx(3.0 * np.sqrt(2), rel=1e-4) and px["input"] == "face-1"
    assert rows[1]["worst"]["max_abs"]["figure"] < 1e-5


def test_report_html_structure(tmp_path):
    v = _validation(tmp_path)
    prov = provenance(v)
    doc = render_report(v, prov)
    assert doc == render_report(v, prov)                 # a function of its arguments
    dom = _parse(doc)
    assert {"provenance", "verdicts"} <= dom.ids
    assert [r["candidate"] for r in dom.rows] == [FAILING, PASSING]
    assert [r["verdict"] for r in dom.rows] == ["FAIL", "PASS"]
    bound = modelzoo.get_spec(MODEL).tolerance("onnx", "fp32", "landmarks").max_px
    assert f"> max_px {bound:g}" in dom.rows[0]["metrics"]["max_px"]
    assert dom.rows[0]["metrics"]["max_px"].startswith("4.24")      # the figure, then its bound
    assert f"≤ max_px {bound:g}" in dom.rows[1]["metrics"]["max_px"]
    assert dom.details and not any(is_open for _, is_open in dom.details)
    assert dom.details[0][0] == FAILING
    for text in (prov["spec_sha256"], "onnx2tf 1.29.24", prov["date_utc"]):
        assert text in doc
    passing = render_report(_validation(tmp_path, shift=1e-6), prov)
    assert [r["verdict"] for r in _parse(passing).rows] == ["PASS", "PASS"]


def render_in_chromium(page, tmp_path, height: int = 2400) -> tuple[np.ndarray, str]:
    """A screenshot (H,W,3) of `page` and its DOM after Chromium loaded it."""
    from PIL import Image
    shot = tmp_path / "report.png"
    load(page, tmp_path / "profile", f"--window-size=1280,{height}", f"--screenshot={shot}")
    dom = load(page, tmp_path / "profile", "--dump-dom").stdout
    assert shot.exists()
    with Image.open(shot) as im:
        return np.asarray(im.convert("RGB")), dom


@pytest.mark.skipif(find_chromium() is None, reason=SKIP_REASON)
def test_report_with_a_failing_edge_renders_in_headless_chromium(tmp_path):
    v = _validation(tmp_path)
    write_report(v, tmp_path / "report.html")
    arr, dom = render_in_chromium(tmp_path / "report.html", tmp_path, height=900)
    assert arr.std() > 20
    rows = _parse(dom).rows
    assert [(r["candidate"], r["verdict"]) for r in rows] == [(FAILING, "FAIL"), (PASSING, "PASS")]
    assert "> max_px" in rows[0]["metrics"]["max_px"]
    # the failing row is drawn: its pink background (#fde8ec) is on the page
    assert np.any(np.all(arr == (0xfd, 0xe8, 0xec), axis=-1))
