"""The build: runs the conversion steps of one model into `<out>/<model>/`, skips steps whose
inputs, options and tool versions are unchanged (content-hash keys), writes build.json."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import modelzoo

from .base import ConversionError, get_step, sha256_path, tool_versions

@dataclass(frozen=True)
class Node:
    step: str
    suffix: str
    deps: tuple[tuple[str, str], ...] = ()


# The build DAG: (format, precision) → how it is made. Nodes sharing a step and its deps are made
# by one call of that step (onnx2tf writes every float precision in one run).
PLAN: dict[tuple[str, str], Node] = {
    ("onnx", "fp32"): Node("torch->onnx", ".onnx"),
    ("tflite", "fp32"): Node("onnx->tflite", "-fp32.tflite", (("onnx", "fp32"),)),
    ("tflite", "fp16"): Node("onnx->tflite", "-fp16.tflite", (("onnx", "fp32"),)),
    ("tflite", "int8"): Node("onnx->tflite", "-int8.tflite", (("onnx", "fp32"),)),
    ("coreml", "fp32"): Node("torch->coreml", "-fp32.mlpackage"),
    ("coreml", "fp16"): Node("torch->coreml", "-fp16.mlpackage"),
}


@dataclass
class BuildResult:
    model: str
    root: Path
    artifacts: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def record_path(self) -> Path:
        return self.root / "build.json"


def supported_targets() -> list[tuple[str, str]]:
    return sorted(PLAN)


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build(model_id: str, out_dir: Path | str, formats: list[str] | None = None, precisions: list[str] | None = None,
          cache_dir: Path | None = None, progress: Callable[[str], None] | None = None,
          require_gpu: bool = True) -> BuildResult:
    """Build every requested enabled target of `model_id`. Unknown models, unsupported or disabled
    format/precision pairs raise before anything is written. TFLite artifacts must pass the
    GPU-delegate check unless `require_gpu` is False (the opt-out)."""
    spec = modelzoo.get_spec(model_id)
    say = progress or (lambda msg: None)
    wanted = [(f, p) for f, p in spec.targets
              if (formats is None or f in formats) and (precisions is None or p in precisions)]
    for f in formats or []:
        if not any(t[0] == f for t in spec.targets):
            raise ConversionError("build", f"{model_id} has no enabled {f} target; enabled: "
                                           f"{', '.join(f'{a}/{b}' for a, b in spec.targets)}")
    unsupported = [t for t in wanted if t not in PLAN]
    if unsupported:
        raise ConversionError("build", "no conversion step for " + ", ".join(f"{f}/{p}" for f, p in unsupported)
                              + "; supported: " + ", ".join(f"{f}/{p}" for f, p in supported_targets()))
    if not wanted:
        raise ConversionError("build", f"nothing to build for {model_id} with formats={formats} "
                                       f"precisions={precisions}")
    t0 = time.perf_counter()
    root = Path(out_dir) / model_id
    model = modelzoo.load_model(model_id, pretrained=modelzoo.has_pretrained(model_id), cache_dir=cache_dir)
    versions = tool_versions()
    previous = _load_record(root / "build.json")
    result = BuildResult(model_id, root)
    base_key = {"spec": spec.sha256(), "weights": weights_digest(model), "tools": versions,
                "require_gpu": require_gpu, "converters": converters_digest()}
    needed = _closure(wanted)
    done: dict[tuple[str, str], dict] = {}
    for step, targets in _groups(needed):
        entries = {}
        for t in targets:
            node = PLAN[t]
            name = f"{model_id}{node.suffix}"
            dep_shas = [done[d]["sha256"] for d in node.deps]
            extra = {"gpu": _gpu_device()} if step == "onnx->tflite" else {}   # decides the dynamic GPU check
            key = hashlib.sha256(json.dumps({**base_key, **extra, "step": step, "target": t, "deps": dep_shas},
                                            sort_keys=True).encode()).hexdigest()
            entries[t] = (name, key)
        stale = [t for t, (name, key) in entries.items() if not _up_to_date(root / name, previous.get(name), key)]
        for t, (name, _) in entries.items():
            if t not in stale:
                say(f"{name}: up to date")
                done[t] = previous[name]
                result.skipped.append(name)
        if not stale:
            continue
        say(f"{', '.join(entries[t][0] for t in stale)}: {step} …")
        arts = _run_step(step, model, spec, root, {t: root / entries[t][0] for t in stale}, done, require_gpu)
        for t, art in zip(stale, arts):
            name, key = entries[t]
            done[t] = {**art.to_json(root), "cache_key": key}
            result.built.append(name)
            say(f"{name}: built in {art.record.get('seconds', 0):.1f} s ({art.bytes / 1e6:.2f} MB)")
    # Artifacts of targets not requested this time stay in the record while their files are intact.
    for t, node in PLAN.items():
        name = f"{model_id}{node.suffix}"
        old = previous.get(name)
        if t not in done and old and (root / name).exists() and sha256_path(root / name) == old.get("sha256"):
            done[t] = old
    result.artifacts = [done[t] for t in sorted(done, key=_order)]
    record = {"model": model_id, "spec_sha256": spec.sha256(), "tool_versions": versions,
              "artifacts": result.artifacts}
    _write_json_atomic(root / "build.json", record)
    result.seconds = time.perf_counter() - t0
    return result


def converters_digest() -> str:
    """sha256 of the converters' own source: a changed lowering or pass rebuilds what it made."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _gpu_device() -> dict | None:
    from .litert_gpu import availability
    device, _ = availability()
    return device.to_json() if device else None


def _order(t: tuple[str, str]) -> tuple[int, int]:
    return ("onnx", "tflite", "coreml").index(t[0]), ("fp32", "fp16", "int8").index(t[1])


def _closure(targets: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    todo = list(targets)
    while todo:
        t = todo.pop()
        if t not in out:
            out.add(t)
            todo.extend(PLAN[t].deps)
    return sorted(out, key=_order)


def _groups(targets: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    groups: dict[tuple[str, tuple], list[tuple[str, str]]] = {}
    for t in targets:
        groups.setdefault((PLAN[t].step, PLAN[t].deps), []).append(t)
    return [(step, ts) for (step, _), ts in groups.items()]


def _up_to_date(path: Path, old: dict | None, key: str) -> bool:
    return bool(old and old.get("cache_key") == key and path.exists() and sha256_path(path) == old.get("sha256"))


def _run_step(step: str, model: torch.nn.Module, spec, root: Path, outs: dict[tuple[str, str], Path],
              done: dict[tuple[str, str], dict], require_gpu: bool) -> list:
    fn = get_step(step)
    if step == "torch->onnx":
        ((_, path),) = outs.items()
        return [fn(model, spec, path)]
    if step == "onnx->tflite":
        onnx_path = root / done[("onnx", "fp32")]["path"]
        return fn(onnx_path, model, spec, {t[1]: p for t, p in outs.items()}, require_gpu=require_gpu)
    if step == "torch->coreml":
        return fn(model, spec, {t[1]: p for t, p in outs.items()})
    raise ConversionError("build", f"no runner for step {step}")


def _load_record(path: Path) -> dict[str, dict]:
    try:
        return {a["path"]: a for a in json.loads(path.read_text())["artifacts"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def progress_to_stderr(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)
