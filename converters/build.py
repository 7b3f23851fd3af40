"""The build: runs the conversion steps of one model into `<out>/<model>/`, skips steps whose
inputs, options and tool versions are unchanged (content-hash keys), writes build.json after
every finished step (an interrupted build keeps what it finished)."""
from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import modelzoo
from modelzoo.spec import FORMATS, PRECISIONS

from runtime.record import ArtifactRecord, BuildRecord

from .base import ConversionError, Step, StepInputs, Target, list_steps, tool_versions

def plan() -> dict[Target, Step]:
    """The build DAG, derived from the registered steps: target → the step that makes it. Targets a
    step makes together come from one call (onnx2tf writes every float precision in one run)."""
    return {t: step for step in list_steps() for t in step.makes}


@dataclass
class BuildResult:
    model: str
    root: Path
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def record_path(self) -> Path:
        return self.root / "build.json"


def supported_targets() -> list[Target]:
    return sorted(plan(), key=_order)


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
    modelzoo.use_build_dir(out_dir)
    spec = modelzoo.get_spec(model_id)
    say = progress or (lambda msg: None)
    wanted = [(f, p) for f, p in spec.targets
              if (formats is None or f in formats) and (precisions is None or p in precisions)]
    for f in formats or []:
        if not any(t[0] == f for t in spec.targets):
            raise ConversionError("build", f"{model_id} has no enabled {f} target; enabled: "
                                           f"{', '.join(f'{a}/{b}' for a, b in spec.targets)}")
    steps = plan()
    unsupported = [t for t in wanted if t not in steps]
    if unsupported:
        raise ConversionError("build", "no conversion step for " + ", ".join(f"{f}/{p}" for f, p in unsupported)
                              + "; supported: " + ", ".join(f"{f}/{p}" for f, p in supported_targets()))
    if not wanted:
        raise ConversionError("build", f"nothing to build for {model_id} with formats={formats} "
                                       f"precisions={precisions}")
    t0 = time.perf_counter()
    root = Path(out_dir) / model_id
    model = modelzoo.load_model(model_id, pretrained=modelzoo.has_pretrained(model_id), cache_dir=cache_dir)
    if getattr(model, "onnx_source", False):   # a model given as ONNX: every target must have a path
        from .onnx_import import preflight
        preflight(model, spec, _closure(wanted, steps))
    from modelzoo.user import is_user_model, save_source
    if is_user_model(model_id):               # later commands find the model again through `root`
        save_source(model_id, root)
    versions = tool_versions()
    before = BuildRecord.read_or_empty(root, model_id)
    previous = before.by_path()
    result = BuildResult(model_id, root)
    base_key = {"spec": spec.sha256(), "weights": weights_digest(model), "tools": versions,
                "require_gpu": require_gpu, "converters": converters_digest()}
    options = {"require_gpu": require_gpu}
    done: dict[Target, ArtifactRecord] = {}
    for step, targets in _groups(_closure(wanted, steps), steps):
        entries = {}
        for t in targets:
            name = f"{model_id}{step.makes[t]}"
            dep_shas = [done[d].sha256 for d in step.needs]
            extra = {"gpu": _gpu_device()} if "require_gpu" in step.options else {}  # decides the dynamic GPU check
            key = hashlib.sha256(json.dumps({**base_key, **extra, "step": step.name, "target": t, "deps": dep_shas},
                                            sort_keys=True).encode()).hexdigest()
            entries[t] = (name, key)
        stale = [t for t, (name, key) in entries.items()
                 if not (name in previous and previous[name].get("cache_key") == key and before.intact(previous[name]))]
        for t, (name, _) in entries.items():
            if t not in stale:
                say(f"{name}: up to date")
                done[t] = previous[name]
                result.skipped.append(name)
        if not stale:
            continue
        label = f"{', '.join(entries[t][0] for t in stale)}: {step.name}"
        say(f"{label} …")
        inputs = StepInputs(model, spec, {d: root / done[d].path for d in step.needs})
        with Heartbeat(label, enabled=progress is not None):
            arts = step(inputs, {t: root / entries[t][0] for t in stale},
                        {k: v for k, v in options.items() if k in step.options})
        for t, art in zip(stale, arts):
            name, key = entries[t]
            done[t] = ArtifactRecord.from_json({**art.to_json(root), "cache_key": key})
            result.built.append(name)
            say(f"{name}: built in {art.record.get('seconds', 0):.1f} s ({art.bytes / 1e6:.2f} MB)")
        _save(root, model_id, spec.sha256(), versions, done, steps, previous, before)
    result.artifacts = _save(root, model_id, spec.sha256(), versions, done, steps, previous, before)
    result.seconds = time.perf_counter() - t0
    return result


def _save(root: Path, model_id: str, spec_sha: str, versions: dict, done: dict[Target, ArtifactRecord],
          steps: dict[Target, Step], previous: dict, before: BuildRecord) -> list[ArtifactRecord]:
    """Write build.json: what this build has made or found up to date so far, and the artifacts of
    targets not requested this time while their files are intact."""
    record = dict(done)
    for t, step in steps.items():
        old = previous.get(f"{model_id}{step.makes[t]}")
        if t not in record and old and before.intact(old):
            record[t] = old
    artifacts = [record[t] for t in sorted(record, key=_order)]
    BuildRecord(model_id, spec_sha, versions, tuple(artifacts)).save(root)
    return artifacts


def converters_digest() -> str:
    """sha256 of the converters' own source: a changed lowering or pass rebuilds what it made."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _gpu_device() -> dict | None:
    from runtime.litert_gpu import availability
    device, _ = availability()
    return device.to_json() if device else None


def _order(t: Target) -> tuple[int, int]:
    return FORMATS.index(t[0]), PRECISIONS.index(t[1])


def _closure(targets: list[Target], steps: dict[Target, Step]) -> list[Target]:
    out: set[Target] = set()
    todo = list(targets)
    while todo:
        t = todo.pop()
        if t not in out:
            out.add(t)
            todo.extend(steps[t].needs)
    return sorted(out, key=_order)


def _groups(targets: list[Target], steps: dict[Target, Step]) -> list[tuple[Step, list[Target]]]:
    groups: dict[str, list[Target]] = {}
    for t in targets:
        groups.setdefault(steps[t].name, []).append(t)
    by_name = {s.name: s for s in steps.values()}
    return [(by_name[name], ts) for name, ts in groups.items()]


def progress_to_stderr(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


class Heartbeat:
    """While a step runs, its elapsed time on stderr once it has taken `after` seconds: a live line
    on a terminal (refreshed every second), else a line every `every` seconds."""

    def __init__(self, label: str, enabled: bool = True, after: float = 2.0, every: float = 5.0):
        self.label, self.enabled, self.after, self.every = label, enabled, after, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = False

    def __enter__(self) -> "Heartbeat":
        if self.enabled:
            self.t0 = time.perf_counter()
            self.stream = sys.stderr
            try:
                self._live = self.stream.isatty()
            except (AttributeError, ValueError):
                self._live = False
            self._thread = threading.Thread(target=self._beat, name="meshport-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        wait, wrote = self.after, False
        while not self._stop.wait(wait):
            elapsed = time.perf_counter() - self.t0
            try:
                if self._live:
                    self.stream.write(f"\r  {self.label} … {elapsed:.0f} s\033[K")
                else:
                    self.stream.write(f"  {self.label}: still running, {elapsed:.0f} s\n")
                self.stream.flush()
            except (OSError, ValueError):
                return
            wrote = True
            wait = 1.0 if self._live else self.every
        if wrote and self._live:
            try:
                self.stream.write("\r\033[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
