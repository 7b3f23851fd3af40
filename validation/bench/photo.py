"""Per-image latency of the whole photo pipeline (decode excluded): detector crop + network +
NMS, then per face the landmark crop + network + projection — on the artifacts of one format,
with each network's own time taken from its runner, so the pipeline's overhead is visible."""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path


from runtime.errors import UsageError
from modelzoo.photo import detection_roi, load_image

from modelzoo.photo.networks import open_pipeline
from .harness import tool_versions
from .stats import host_description, summarize

PHOTO_LATENCY_JSON = "photo_latency.json"


def bench_photo(photo: Path | str, build: Path | str | None = None, *, fmt: str = "tflite", precision: str = "fp32",
                runtime: str | None = None, threads: int = 1, runs: int = 100, warmup: int = 10,
                landmark_model: str = "attention_mesh", write: bool = True, progress=None) -> dict:
    """Timings (ms) of `runs` pipeline passes over one photo; written to
    <build>/<landmark_model>/photo_latency.json when `write` and a build is given."""
    if runs < 1 or warmup < 0:
        raise UsageError(f"need runs ≥ 1 and warmup ≥ 0 (got {runs}, {warmup})")
    image = load_image(photo)
    times: dict[str, list[float]] = {k: [] for k in ("total", "detect", "landmarks", "detector_net",
                                                    "landmark_net")}
    with ExitStack() as stack:
        pipe = open_pipeline(stack, landmark_model, build=build, fmt=fmt, precision=precision, runtime=runtime,
                             threads=threads)
        det_runner, lm_runner = _runners(pipe)
        faces = 0
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            dets = pipe.detect(image)
            t1 = time.perf_counter()
            det_net = det_runner.last_inference_ms
            lm_net = 0.0
            for d in dets:
                pipe.landmarks(image, detection_roi(d.box, d.keypoints))
                lm_net += lm_runner.last_inference_ms
            t2 = time.perf_counter()
            if i >= warmup:
                faces = len(dets)
                for k, v in (("total", t2 - t0), ("detect", t1 - t0), ("landmarks", t2 - t1)):
                    times[k].append(v * 1e3)
                times["detector_net"].append(det_net)
                times["landmark_net"].append(lm_net)
            if progress:
                progress(1)
    stats = {k: summarize(v).to_json() for k, v in times.items()}
    out = {"photo": str(photo), "image_size": [int(image.shape[1]), int(image.shape[0])], "faces": faces,
           "format": fmt, "precision": precision, "runtime": runtime or "default", "threads": threads,
           "runs": runs, "warmup": warmup, "device": host_description(), "stages_ms": stats,
           "overhead_median_ms": round(stats["total"]["median_ms"] - stats["detector_net"]["median_ms"]
                                       - stats["landmark_net"]["median_ms"], 4),
           "tool_versions": tool_versions()}
    if write and build is not None:
        path = Path(build) / landmark_model / PHOTO_LATENCY_JSON
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(path)
        out["path"] = str(path)
    return out


def _runners(pipe):
    """The runners behind the pipeline's two networks."""
    return pipe.detector.runner, pipe.landmarker.runner


def format_photo(result: dict) -> str:
    s = result["stages_ms"]
    lines = [f"photo pipeline on {result['photo']} ({result['image_size'][0]}×{result['image_size'][1]}, "
             f"{result['faces']} face(s)), {result['format']}/{result['precision']}, {result['threads']} thread(s), "
             f"{result['runs']} runs",
             f"{'stage':<28} {'median ms':>10} {'p90 ms':>10} {'min ms':>10}"]
    for key, label in (("total", "per image"), ("detect", "  detect (crop+net+NMS)"),
                       ("detector_net", "    detector network"), ("landmarks", "  landmarks (all faces)"),
                       ("landmark_net", "    landmark network")):
        lines.append(f"{label:<28} {s[key]['median_ms']:>10.3f} {s[key]['p90_ms']:>10.3f} {s[key]['min_ms']:>10.3f}")
    lines.append(f"{'overhead (crops, NMS, Python)':<28} {result['overhead_median_ms']:>10.3f}")
    return "\n".join(lines)
