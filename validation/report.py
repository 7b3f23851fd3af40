"""report.html: per-edge tables, landmark overlays of every format on the real faces, error
histograms, GPU-checker results, and what could not run. Self-contained (images inlined)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from runtime.files import write_text_atomic


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _overlays(v, output: str | None) -> list[tuple[str, str]]:
    """One image per real face: every runner's landmarks (the spec's landmark `output`), or a
    detector's confident boxes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    images = []
    runners = list(v.outputs)
    colors = plt.cm.tab10(np.linspace(0, 1, max(len(runners), 2)))
    for case in [c for c in v.cases if c.is_face]:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        ax.imshow(case.array[0].transpose(1, 2, 0))
        for rid, color in zip(runners, colors):
            out = v.outputs[rid][case.name]
            lm = out.get(output) if output else None
            if lm is not None:
                ax.scatter(lm[0, :, 0], lm[0, :, 1], s=2, color=color, label=rid)
            elif "boxes" in out and "scores" in out:      # detectors: the anchors scoring ≥ 0.5
                keep = np.flatnonzero(out["scores"][0] >= 0.5)
                for i in keep:
                    x0, y0, x1, y1 = out["boxes"][0, i]
                    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.6, color=color,
                                               label=rid if i == keep[0] else None))
        ax.set_axis_off()
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=5, loc="lower left", markerscale=3)
        images.append((case.name, _png(fig)))
    return images


def _histogram(v, output: str | None) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if output is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    plotted = False
    ref = v.outputs.get("pytorch", {})
    for rid, outs in v.outputs.items():
        if rid == "pytorch":
            continue
        errs = [np.linalg.norm(outs[c.name][output][0, :, :2] - ref[c.name][output][0, :, :2], axis=-1)
                for c in v.cases if c.is_face and output in outs[c.name]]
        if errs:
            e = np.concatenate(errs)
            ax.hist(np.log10(np.maximum(e, 1e-7)), bins=40, histtype="step", label=rid)
            plotted = True
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("log10 landmark error vs PyTorch (px), real faces")
    ax.set_ylabel("landmarks")
    ax.legend(fontsize=6)
    return _png(fig)


def _dynamic(d: dict | None) -> str:
    if not d:
        return "not recorded"
    if not d.get("ran"):
        return f"not run: {d.get('reason', '')}"
    dev = d.get("device", {})
    where = f"{dev.get('name', '?')} via {dev.get('backend', '?')}" + (" (software)" if dev.get("software") else "")
    return ("pass" if d.get("ok") else f"FAIL: {d.get('error', '')}") + f" on {where}"


def _candidates_table(v, spec) -> str:
    """Per candidate vs PyTorch: the runner's arithmetic, worst figures over every input, the
    bounds that judged the landmarks, and the verdict (GPU edges beside the others)."""
    from .compare import landmark_result, worst_by_candidate
    e = html.escape
    rows = []
    for rid, w in worst_by_candidate(v.edges, spec).items():
        edge = next(x for x in v.edges if x.candidate == rid and x.reference == "pytorch")
        lm = landmark_result(edge.outputs, spec)
        bound = ", ".join(f"{k} {lm.tolerance[k]:g}" for k in ("atol", "max_px", "mean_iod_pct")
                          if lm and k in lm.tolerance)
        iod = "" if w["iod"] is None else f"{w['iod']:.3g}"
        rows.append(f"<tr class='{'ok' if w['passed'] else 'fail'}'><td>{e(rid)}</td>"
                    f"<td>{e(edge.compute or 'artifact')}</td><td>{w['max_abs']:.3g}</td><td>{w['max_px']:.3g}</td>"
                    f"<td>{iod}</td><td>{e(bound)}</td><td>{'pass' if w['passed'] else 'FAIL'}</td></tr>")
    return ("<h2>Candidates vs PyTorch (worst over every input)</h2><table><tr><th>candidate</th><th>arithmetic</th>"
            "<th>max abs</th><th>max px</th><th>mean % IOD</th><th>landmark bounds</th><th>verdict</th></tr>"
            + "".join(rows) + "</table>")


def write_report(v, path: Path) -> None:
    import modelzoo
    spec = modelzoo.get_spec(v.model)
    output = spec.landmarks.output if spec.landmarks is not None else None
    e = html.escape
    rows = []
    for edge in v.edges:
        for o in edge.outputs:
            lm = (o.landmarks or {}).get("all", {})
            iod = lm.get("mean_iod_pct")
            rows.append(
                f"<tr class='{'ok' if o.passed else 'fail'}'><td>{e(edge.reference)}</td><td>{e(edge.candidate)}</td>"
                f"<td>{e(edge.input_set)}</td><td>{e(o.name)}</td><td>{o.max_abs:.3g}</td><td>{o.mean_abs:.3g}</td>"
                f"<td>{o.p99_abs:.3g}</td><td>{'' if not lm else format(lm['max_px'], '.3g')}</td>"
                f"<td>{'' if iod is None else f'{iod:.3g}'}</td><td>{e('; '.join(o.failures) or 'pass')}</td></tr>")
    sections = [f"<h1>Parity report — {e(v.model)}</h1>",
                f"<p class='{'ok' if v.passed else 'fail'}'>{'All edges pass.' if v.passed else 'Some edges FAIL.'} "
                f"{len(v.edges)} edges over {len(v.cases)} inputs "
                f"({', '.join(e(c.name) for c in v.cases)}).</p>"]
    sections.append(_candidates_table(v, spec))
    if v.skipped:
        sections.append("<h2>Runners unavailable here</h2><ul>" + "".join(
            f"<li>{e(x['artifact'])} @ {e(x['runner'])}: {e(x['reason'])}</li>" for x in v.skipped) + "</ul>")
    if v.errors:
        sections.append("<h2>Could not run</h2><ul>" + "".join(
            f"<li class='fail'>{e(x['artifact'])} @ {e(x['runner'])}: {e(x['error'])}</li>" for x in v.errors) + "</ul>")
    if v.localisation:
        sections.append("<h2>Where it diverges</h2><ul>" + "".join(
            f"<li>{e(x['reference'])} → {e(x['candidate'])} [{e(x['input_set'])}]: <b>{e(str(x.get('node')))}</b> — "
            f"{e(str(x.get('detail')))}</li>" for x in v.localisation) + "</ul>")
    gpu = [(a.path, a.get("gpu_check") or {}) for a in (v.record.select(["tflite"]) if v.record else [])]
    if gpu:
        sections.append("<h2>GPU check (build)</h2><table><tr><th>artifact</th><th>ops</th><th>static: flagged</th>"
                        "<th>dynamic: GPU-only compile + quick gate</th></tr>" + "".join(
            f"<tr class='{'ok' if g.get('ok') else 'fail'}'><td>{e(p)}</td><td>{g.get('ops', '?')}</td>"
            f"<td>{len(g.get('flagged', []))}</td><td>{e(_dynamic(g.get('dynamic')))}</td></tr>" for p, g in gpu)
            + "</table>")
    hist = _histogram(v, output)
    if hist:
        sections.append(f"<h2>Error distribution</h2><img alt='error histogram' src='{hist}'>")
    overlays = _overlays(v, output)
    if overlays:
        sections.append("<h2>Landmarks of every format on the real faces</h2><div class='grid'>" + "".join(
            f"<figure><img alt='{e(n)}' src='{src}'><figcaption>{e(n)}</figcaption></figure>" for n, src in overlays)
            + "</div>")
    sections.append("<h2>Edges</h2><table><tr><th>reference</th><th>candidate</th><th>input</th><th>output</th>"
                    "<th>max abs</th><th>mean abs</th><th>p99 abs</th><th>max px</th><th>mean % IOD</th>"
                    "<th>verdict</th></tr>" + "".join(rows) + "</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px}.fail{color:#b00020}.ok{color:#0a6b2d}"
             ".grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}")
    doc = f"<!doctype html><html><head><meta charset='utf-8'><title>Meshport parity — {e(v.model)}</title>" \
          f"<style>{style}</style></head><body>{''.join(sections)}</body></html>"
    write_text_atomic(path, doc)
