"""The validation suite on the real model: every edge, the report, and broken artifacts."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from validation.compare import ParityError
from runtime.runners import get_runner
from runtime.record import BuildRecordError
from validation.validate import require_passed, validate
from tests.validation.headless import SKIP_REASON, find_chromium, load

MODEL = "attention_mesh"


@pytest.fixture(scope="module")
def validated(full_build):
    root, _ = full_build
    return validate(MODEL, root.parent)


@pytest.mark.slow
def test_every_edge_passes_on_every_input_set(validated):
    v = validated
    assert v.passed, [(e.candidate, e.input_set) for e in v.edges if not e.passed]
    kinds = {c.kind for c in v.cases}
    assert kinds == {"seeded", "face", "perturbed", "photo-crop"}
    candidates = {e.candidate for e in v.edges if e.reference == "pytorch"}
    for fmt in ("attention_mesh.onnx@", "attention_mesh-fp32.tflite@", "attention_mesh-fp16.tflite@",
                "attention_mesh-int8.tflite@", "attention_mesh-fp32.mlpackage@mil", "attention_mesh-fp16.mlpackage@mil"):
        assert any(c.startswith(fmt) for c in candidates), fmt
    if get_runner("tflite-gpu").is_available().ok:        # the GPU accelerator, both arithmetics, every TFLite file
        for precision in ("fp32", "fp16", "int8"):
            for runner in ("tflite-gpu", "tflite-gpu-f32"):
                assert f"attention_mesh-{precision}.tflite@{runner}" in candidates
    else:
        assert {s["runner"] for s in v.skipped} >= {"tflite-gpu", "tflite-gpu-f32"}
    require_passed(v)


@pytest.mark.slow
def test_shifting_any_output_of_any_candidate_on_any_input_fails_validate_naming_it(validated):
    """Sabotage: every output of every candidate (ONNX, TFLite fp32/fp16/int8 on every runner incl. the
    GPU, Core ML fp32/fp16) shifted by three times its widest bound, on each input set alone."""
    from dataclasses import replace

    import modelzoo
    from modelzoo.tolerances import resolve
    from validation.validate import judge
    v, spec = validated, modelzoo.get_spec(MODEL)
    entries = v.record.by_path()
    candidates = [rid for rid in v.outputs if rid != "pytorch"]
    assert len(candidates) >= 9
    for rid in candidates:
        path, runner = rid.split("@")
        entry, compute = entries[path], get_runner(runner).compute
        for out in spec.outputs:
            b = resolve(spec, entry.format, entry.precision, out.name, compute)
            shift = 3 * max(x for x in (b.atol, b.max_px) if x is not None)
            for case in v.cases:
                got = {c: ({**o, out.name: o[out.name] + shift} if c == case.name else o)
                       for c, o in v.outputs[rid].items()}
                edges = judge(spec, "pytorch", rid, entry, v.outputs["pytorch"], got, v.cases, compute)
                failing = [(e.input_set, o.name) for e in edges for o in e.outputs if not o.passed]
                assert failing == [(case.name, out.name)], (rid, case.name, out.name, failing)
                with pytest.raises(ParityError, match=f"{rid} \\[{case.name}\\] {out.name}: "):
                    require_passed(replace(v, edges=edges, errors=[], localisation=[]))


@pytest.mark.slow
def test_parity_json_contract(validated):
    data = json.loads((validated.root / "parity.json").read_text())
    assert data["passed"] is True and data["model"] == MODEL
    edge = next(e for e in data["edges"] if e["candidate"].startswith("attention_mesh-fp32.tflite")
                and e["input_kind"] == "face")
    lm = edge["outputs"]["landmarks"]
    for key in ("max_abs", "mean_abs", "p99_abs", "max_rel", "min_atol", "tolerance", "passed"):
        assert key in lm
    assert set(lm["landmarks"]) == {"all", "lips", "eyes", "iris"}
    assert {"max_px", "mean_px", "mean_iod_pct"} <= set(lm["landmarks"]["iris"])
    assert lm["landmarks"]["all"]["max_px"] <= 1e-3
    assert all(g["ok"] for g in data["gpu_check"].values())
    assert (validated.root / "report.html").stat().st_size > 10_000


def _copy_build(root, dest, keep):
    dest.mkdir()
    record = json.loads((root / "build.json").read_text())
    record["artifacts"] = [a for a in record["artifacts"] if a["path"] in keep]
    for a in record["artifacts"]:
        shutil.copy(root / a["path"], dest / a["path"])
    (dest / "build.json").write_text(json.dumps(record))
    return dest


@pytest.mark.slow
def test_perturbed_tflite_weight_is_caught_and_localised(full_build, tmp_path):
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    root, _ = full_build
    dest = _copy_build(root, tmp_path / MODEL, {"attention_mesh.onnx", "attention_mesh-fp32.tflite"})
    path = dest / "attention_mesh-fp32.tflite"
    model = fbu.read_model_from_bytearray(bytearray(path.read_bytes()))
    sg = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    convs = [op for op in sg.operators if codes[op.opcodeIndex] == 3]          # CONV_2D
    # a backbone conv: the first one on the 24×24 map
    target = next(op for op in convs if tuple(sg.tensors[int(op.outputs[0])].shape[1:3]) == (24, 24))
    wt = sg.tensors[int(target.inputs[1])]
    w = np.frombuffer(bytes(model.buffers[wt.buffer].data), np.float32).reshape(wt.shape).copy()
    model.buffers[wt.buffer].data = np.frombuffer((w + 0.5).astype(np.float32).tobytes(), np.uint8)
    path.write_bytes(bytes(fbu.convert_object_to_bytearray(model)))
    v = validate(MODEL, tmp_path)
    assert not v.passed
    with pytest.raises(ParityError, match="attention_mesh-fp32.tflite"):
        require_passed(v)
    loc = next(x for x in v.localisation if x["candidate"].startswith("attention_mesh-fp32.tflite@tflite"))
    # The ONNX Conv carrying the same (unperturbed) weights is the node responsible.
    onnx_model = onnx.load(str(dest / "attention_mesh.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    want = w.transpose(0, 3, 1, 2)
    responsible = [n.name for n in onnx_model.graph.node if n.op_type == "Conv" and n.input[1] in inits
                   and inits[n.input[1]].shape == want.shape and np.allclose(inits[n.input[1]], want)]
    # Named at that Conv or at the op it feeds in the same block (onnx2tf may not keep the Conv's
    # own output tensor comparable; the residual ADD right after it is the first one that is).
    block = responsible[0].rsplit("/", 2)[0] + "/" if responsible else None
    assert responsible and loc["node"].startswith(block), (loc, responsible)
    assert "report.html" in {p.name for p in dest.iterdir()}


@pytest.mark.slow
def test_sampler_with_wrong_align_corners_is_caught_and_localised(full_build, tmp_path):
    root, _ = full_build
    dest = _copy_build(root, tmp_path / MODEL, {"attention_mesh.onnx"})
    m = onnx.load(str(dest / "attention_mesh.onnx"))
    for n in m.graph.node:
        if n.op_type == "GridSample":
            for a in n.attribute:
                if a.name == "align_corners":
                    a.i = 0
    onnx.save(m, str(dest / "attention_mesh.onnx"))
    v = validate(MODEL, tmp_path)
    assert not v.passed
    (loc,) = v.localisation
    assert loc["module"].startswith("samplers.")
    assert "GridSample" in " ".join(loc["nodes_in_scope"])


@pytest.mark.slow
def test_missing_artifact_is_reported_and_the_report_still_renders(full_build, tmp_path):
    root, _ = full_build
    dest = _copy_build(root, tmp_path / MODEL, {"attention_mesh.onnx", "attention_mesh-fp32.tflite"})
    (dest / "attention_mesh-fp32.tflite").unlink()
    v = validate(MODEL, tmp_path, localise=False)
    assert not v.passed and v.errors[0]["artifact"] == "attention_mesh-fp32.tflite"
    assert "not found" in v.errors[0]["error"]
    html = (dest / "report.html").read_text()
    assert "Could not run" in html and "attention_mesh.onnx@onnxruntime" in html


def test_bad_build_records(tmp_path):
    with pytest.raises(BuildRecordError, match="no build record"):
        validate(MODEL, tmp_path)
    (tmp_path / MODEL).mkdir()
    (tmp_path / MODEL / "build.json").write_text("{not json")
    with pytest.raises(BuildRecordError, match="corrupt"):
        validate(MODEL, tmp_path)
    (tmp_path / MODEL / "build.json").write_text(json.dumps({"model": MODEL, "spec_sha256": "0" * 64,
                                                              "artifacts": []}))
    with pytest.raises(BuildRecordError, match="another spec"):
        validate(MODEL, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason=SKIP_REASON)
def test_report_renders_in_headless_chromium(validated, tmp_path):
    import re
    from dataclasses import replace

    from PIL import Image

    import modelzoo
    from validation.report import write_report
    from validation.validate import judge
    shot = tmp_path / "report.png"
    load(validated.root / "report.html", tmp_path / "profile", "--window-size=1280,2400", f"--screenshot={shot}")
    assert shot.exists()
    with Image.open(shot) as im:
        arr = np.asarray(im.convert("RGB"))
    assert arr.shape[0] == 2400 and arr.std() > 20      # a rendered page, not a blank one
    # The overlay images decoded: many distinct colours beyond the page's text and tables.
    assert len(np.unique(arr.reshape(-1, 3)[::97], axis=0)) > 500

    def verdict_rows(dom):
        table = re.search(r"<table id=\"verdicts\">(.*?)</table>", dom, re.S)
        assert table, "no verdict table in the rendered page"
        return re.findall(r'<tr class="\w+" data-verdict="(\w+)" data-candidate="([^"]+)">(.*?)</tr>',
                          table.group(1), re.S)

    rows = verdict_rows(load(validated.root / "report.html", tmp_path / "profile", "--dump-dom").stdout)
    assert rows and {r[0] for r in rows} == {"PASS"}
    assert {r[1] for r in rows} == {e.candidate for e in validated.edges if e.reference == "pytorch"}
    # The same validation with the last candidate's landmarks 5 px off on one face: its row comes first, FAIL,
    # its max px figure followed by the bound it broke.
    spec, entries = modelzoo.get_spec(MODEL), validated.record.by_path()
    rid = rows[-1][1]
    got = {c: ({**o, "landmarks": o["landmarks"] + 5.0} if c == "face-1" else o)
           for c, o in validated.outputs[rid].items()}
    edges = [e for e in validated.edges if e.candidate != rid] + judge(
        spec, "pytorch", rid, entries[rid.split("@")[0]], validated.outputs["pytorch"], got, validated.cases,
        get_runner(rid.split("@")[1]).compute)
    broken = replace(validated, edges=edges, root=tmp_path)
    write_report(broken, tmp_path / "broken.html")
    rows = verdict_rows(load(tmp_path / "broken.html", tmp_path / "profile", "--dump-dom").stdout)
    assert [r[:2] for r in rows[:2]] == [("FAIL", rid), ("PASS", rows[1][1])]
    assert re.search(r'data-metric="max_px"><span class="figure">7\.07</span> <span class="bound">&gt; max_px ',
                     rows[0][2]), rows[0][2]
    assert "<details" in (tmp_path / "broken.html").read_text()


@pytest.mark.slow
def test_the_face_detector_passes_the_suite_on_every_format(detector_build):
    v = validate("face_detector", detector_build.parent)
    require_passed(v)
    candidates = {e.candidate.split("@")[0] for e in v.edges if e.reference == "pytorch"}
    assert candidates == {"face_detector.onnx", "face_detector-fp32.tflite", "face_detector-fp16.tflite",
                          "face_detector-fp32.mlpackage", "face_detector-fp16.mlpackage"}
    data = json.loads((v.root / "parity.json").read_text())
    assert all(g["ok"] and not g["flagged"] for g in data["gpu_check"].values())
    face = next(e for e in data["edges"] if e["candidate"] == "face_detector-fp32.tflite@tflite"
                and e["input_kind"] == "face")
    assert face["outputs"]["boxes"]["max_abs"] <= 1e-3 and face["outputs"]["scores"]["max_abs"] <= 1e-3
    record = json.loads((detector_build / "build.json").read_text())
    tflite = [a for a in record["artifacts"] if a["format"] == "tflite"]
    assert tflite and all("TRANSPOSE" not in a["op_counts"] and "GATHER" not in a["op_counts"] for a in tflite)
