"""report.html: a provenance header, a verdict table (one row per artifact × runner, failures
first, each metric's worst figure beside its bound), what could not run, GPU-checker results,
error histograms, landmark overlays of every format on the real faces, and every edge's figures
in collapsed sections. Self-contained (images inlined); `render_report` depends only on its
arguments."""
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


_METRICS = (("max_abs", "max abs", "atol"), ("max_px", "max px", "max_px"), ("mean_iod_pct", "mean % IOD", "mean_iod_pct"))


def _worst(edges, spec) -> dict[str, dict]:
    """Per bounded metric, over every edge and output: the figure closest to (or furthest past)
    its bound, with the bound (`modelzoo.tolerances.resolve`) and where it occurred. A metric no
    output bounds is reported by its largest figure, bound None."""
    from modelzoo.tolerances import resolve
    worst: dict[str, dict] = {}
    for edge in edges:
        for o in edge.outputs:
            b = resolve(spec, edge.format, edge.precision, o.name, edge.compute)
            lm = o.landmarks or {}
            figures = {"max_abs": o.max_abs,
                       "max_px": max((m["max_px"] for m in lm.values()), default=None),
                       "mean_iod_pct": max((m["mean_iod_pct"] for m in lm.values() if m["mean_iod_pct"] is not None),
                                           default=None)}
            for key, _, bound_key in _METRICS:
                fig, bound = figures[key], getattr(b, bound_key)
                if key == "max_abs" and "abs_bound" in o.tolerance:   # rtol: the bound of this reference
                    bound = o.tolerance["abs_bound"]
                if fig is None:
                    continue
                # rank by figure / bound (past the bound first); unbounded figures rank below bounded ones
                rank = (1, fig / bound if bound else float("inf")) if bound is not None else (0, fig)
                if key not in worst or rank > worst[key]["rank"]:
                    worst[key] = {"figure": fig, "bound": bound, "output": o.name, "input": edge.input_set,
                                  "rank": rank}
    return worst


def _metric_cell(key: str, label: str, bound_key: str, w: dict | None) -> str:
    e = html.escape
    if w is None:
        return f"<td class='metric' data-metric='{key}'>—</td>"
    fig, bound = w["figure"], w["bound"]
    if bound is None:
        bound_html, cls = "<span class='bound'>no bound</span>", "ok"
    else:
        ok = fig <= bound
        bound_html, cls = f"<span class='bound'>{'≤' if ok else '&gt;'} {bound_key} {bound:g}</span>", \
            "ok" if ok else "fail"
    return (f"<td class='metric {cls}' data-metric='{key}'><span class='figure'>{fig:.3g}</span> {bound_html}"
            f"<div class='where'>{e(w['output'])} · {e(w['input'])}</div></td>")


def verdict_rows(v, spec) -> list[dict]:
    """One row per artifact × runner judged against PyTorch (and per one that could not run):
    its verdict and the worst figure of each bounded metric; failures first, then by name."""
    rows: dict[str, dict] = {}
    for edge in v.edges:
        if edge.reference != "pytorch":
            continue
        r = rows.setdefault(edge.candidate, {"candidate": edge.candidate, "format": edge.format,
                                             "precision": edge.precision, "compute": edge.compute,
                                             "edges": [], "error": None})
        r["edges"].append(edge)
    for x in v.errors:
        rid = f"{x['artifact']}@{x['runner']}"
        rows.setdefault(rid, {"candidate": rid, "format": "", "precision": "", "compute": None, "edges": [],
                              "error": None})["error"] = x["error"]
    out = []
    for r in rows.values():
        r["passed"] = r["error"] is None and all(e.passed for e in r["edges"])
        r["failing_inputs"] = [e.input_set for e in r["edges"] if not e.passed]
        r["worst"] = _worst(r["edges"], spec)
        out.append(r)
    return sorted(out, key=lambda r: (r["passed"], r["candidate"]))


def _verdict_table(rows: list[dict]) -> str:
    e = html.escape
    body = []
    for r in rows:
        verdict = "PASS" if r["passed"] else "FAIL"
        why = (f"could not run: {r['error']}" if r["error"] else
               f"fails on {', '.join(r['failing_inputs'])}" if r["failing_inputs"] else "")
        body.append(f"<tr class='{'ok' if r['passed'] else 'fail'}' data-verdict='{verdict}' "
                    f"data-candidate='{e(r['candidate'])}'><td>{e(r['candidate'])}</td>"
                    f"<td>{e(r['compute'] or 'artifact')}</td><td class='verdict'><b>{verdict}</b>"
                    f"{'<div class=where>' + e(why) + '</div>' if why else ''}</td>"
                    + "".join(_metric_cell(k, label, bk, r["worst"].get(k)) for k, label, bk in _METRICS) + "</tr>")
    return ("<h2>Verdict per artifact</h2><p>Each artifact on each runner against PyTorch, over every input; "
            "the worst figure of each metric beside the bound the spec sets for it (the figure closest to its "
            "bound across outputs and inputs). Failures first.</p><table id='verdicts'><tr><th>artifact @ runner"
            "</th><th>arithmetic</th><th>verdict</th>" + "".join(f"<th>{label} (bound)</th>" for _, label, _ in _METRICS)
            + "</tr>" + "".join(body) + "</table>")


def _edge_details(v) -> str:
    """Per edge (reference → candidate), collapsed: every input × output with its figures."""
    e = html.escape
    groups: dict[tuple[str, str], list] = {}
    for edge in v.edges:
        groups.setdefault((edge.reference, edge.candidate), []).append(edge)
    order = sorted(groups, key=lambda k: (all(x.passed for x in groups[k]), k[0] != "pytorch", k[1]))
    parts = []
    for ref, cand in order:
        edges = groups[(ref, cand)]
        failing = sum(not x.passed for x in edges)
        rows = []
        for edge in edges:
            for o in edge.outputs:
                lm = (o.landmarks or {}).get("all", {})
                iod = lm.get("mean_iod_pct")
                rows.append(
                    f"<tr class='{'ok' if o.passed else 'fail'}'><td>{e(edge.input_set)}</td><td>{e(o.name)}</td>"
                    f"<td>{o.max_abs:.3g}</td><td>{o.mean_abs:.3g}</td><td>{o.p99_abs:.3g}</td>"
                    f"<td>{'' if not lm else format(lm['max_px'], '.3g')}</td>"
                    f"<td>{'' if iod is None else f'{iod:.3g}'}</td>"
                    f"<td>{e(', '.join(f'{k} {val:g}' for k, val in o.tolerance.items() if k in ('atol', 'rtol', 'abs_bound', 'max_px', 'mean_iod_pct')))}</td>"
                    f"<td>{e('; '.join(o.failures) or 'pass')}</td></tr>")
        status = f"{failing} of {len(edges)} inputs FAIL" if failing else f"{len(edges)} inputs pass"
        parts.append(f"<details data-reference='{e(ref)}' data-candidate='{e(cand)}'><summary class="
                     f"'{'fail' if failing else 'ok'}'>{e(ref)} → {e(cand)}: {status}</summary><table><tr>"
                     "<th>input</th><th>output</th><th>max abs</th><th>mean abs</th><th>p99 abs</th><th>max px</th>"
                     "<th>mean % IOD</th><th>bounds</th><th>verdict</th></tr>" + "".join(rows) + "</table></details>")
    return "<h2>Every edge, input and output</h2>" + "".join(parts)


def provenance(v) -> dict:
    """What the report records about where and from what it was made: the date (UTC), the git
    commit of the source tree (None outside a checkout), the host, the model id and spec
    sha256, the build's spec sha256 and tool versions."""
    import datetime
    import platform
    import subprocess

    import modelzoo
    src = Path(__file__).resolve().parents[1]
    commit = None
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode == 0:
            commit = head.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
            if dirty.returncode == 0 and dirty.stdout.strip():
                commit += " (with uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "git_commit": commit, "host": f"{platform.node()} ({platform.platform()}, Python "
                                          f"{platform.python_version()})",
            "model": v.model, "spec_sha256": modelzoo.get_spec(v.model).sha256(),
            "build_spec_sha256": v.record.spec_sha256 if v.record else None,
            "tool_versions": dict(v.record.tool_versions) if v.record else {}}


def _provenance_header(p: dict) -> str:
    e = html.escape
    items = [("date", p.get("date_utc")), ("git commit", p.get("git_commit") or "not a git checkout"),
             ("model", p.get("model")), ("spec sha256", p.get("spec_sha256")),
             ("build from spec sha256", p.get("build_spec_sha256") or "no build record"), ("host", p.get("host")),
             ("tool versions", ", ".join(f"{k} {val}" for k, val in sorted((p.get("tool_versions") or {}).items()))
              or "not recorded")]
    return "<table id='provenance'>" + "".join(f"<tr><th>{e(k)}</th><td>{e(str(val))}</td></tr>" for k, val in items) \
        + "</table>"


def render_report(v, prov: dict) -> str:
    """The report of `v` as one self-contained HTML document; `prov` is `provenance(v)` (passed
    in so that the document depends on nothing but its arguments)."""
    import modelzoo
    spec = modelzoo.get_spec(v.model)
    output = spec.landmarks.output if spec.landmarks is not None else None
    e = html.escape
    rows = verdict_rows(v, spec)
    failing = [r for r in rows if not r["passed"]]
    sections = [f"<h1>Parity report — {e(v.model)}</h1>", _provenance_header(prov),
                f"<p class='{'ok' if v.passed else 'fail'}'><b>{'PASS' if v.passed else 'FAIL'}</b>: "
                f"{len(rows) - len(failing)} of {len(rows)} artifact × runner pairs pass against PyTorch; "
                f"{len(v.edges)} edges over {len(v.cases)} inputs ({', '.join(e(c.name) for c in v.cases)}).</p>",
                _verdict_table(rows)]
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
    sections.append(_edge_details(v))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}.fail{color:#b00020}.ok{color:#0a6b2d}"
             "#verdicts tr.fail{background:#fde8ec}.bound{color:#555}.where{color:#777;font-size:10px}"
             "#provenance th{text-align:left}details{margin:2px 0}summary{cursor:pointer}"
             ".grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Meshport parity — {e(v.model)}</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")


def write_report(v, path: Path) -> None:
    write_text_atomic(path, render_report(v, provenance(v)))
