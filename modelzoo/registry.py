"""The zoo registry: one entry per model id, registered by decorator."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

from .errors import RegistryError, UnknownModelError
from .spec import ModelSpec


@dataclass(frozen=True)
class ModelEntry:
    id: str
    spec: Callable[[], ModelSpec]
    build: Callable[[], torch.nn.Module]
    # (module, cache_dir) -> None; loads pretrained weights in place. None: seeded random init only.
    load_weights: Callable[[torch.nn.Module, Path | None], None] | None = None
    seed: int = 0


_REGISTRY: dict[str, ModelEntry] = {}
# The zoo's own model packages (or the module of a package that registers its models): imported,
# and so registered, the first time the registry is asked, which keeps `import modelzoo` free of torch.
ZOO_PACKAGES = ("attention_mesh", "attention_mesh_paper", "face_detector.zoo", "face_mesh_cascade")
# Third-party zoos: installed distributions name, in this entry-point group, a module that
# registers its models with `register_model` when imported (or a callable that does, called once).
ENTRY_POINT_GROUP = "meshport.models"
_zoo_loaded = False
_plugin_failures: list[str] = []


def _load_zoo() -> None:
    global _zoo_loaded
    if not _zoo_loaded:
        import importlib
        _zoo_loaded = True
        for name in ZOO_PACKAGES:
            importlib.import_module(f"{__package__}.{name}")
        _load_entry_points()


def _load_entry_points() -> None:
    """Import every `meshport.models` entry point. One that fails is reported once on stderr (and
    named when a model id is not found): a broken plugin does not break the zoo."""
    import sys
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except Exception as exc:
            dist = getattr(ep.dist, "name", None) or "?"
            msg = f"entry point {ep.name!r} = {ep.value} (from {dist}): {type(exc).__name__}: {exc}".splitlines()[0]
            _plugin_failures.append(msg)
            print(f"meshport: warning: model plugin not loaded: {msg}", file=sys.stderr)


def zoo_ids() -> set[str]:
    """The ids of the zoo's and the plugins' models (not user models)."""
    _load_zoo()
    return set(_REGISTRY)


def register_model(
    model_id: str,
    *,
    spec: Callable[[], ModelSpec],
    load_weights: Callable[[torch.nn.Module, Path | None], None] | None = None,
    seed: int = 0,
) -> Callable[[Callable[[], torch.nn.Module]], Callable[[], torch.nn.Module]]:
    """Decorator registering a model builder under `model_id`. A duplicate id raises."""

    def wrap(build: Callable[[], torch.nn.Module]) -> Callable[[], torch.nn.Module]:
        _load_zoo()   # a duplicate of a zoo id is refused whichever registers first
        from .user import is_user_model
        if model_id in _REGISTRY or is_user_model(model_id):
            raise RegistryError(f"model id {model_id!r} is already registered")
        _REGISTRY[model_id] = ModelEntry(model_id, spec, build, load_weights, seed)
        return build

    return wrap


def entry(model_id: str) -> ModelEntry:
    """The zoo's (or a plugin's) model, else a user model registered or found in a build
    directory (modelzoo.user)."""
    _load_zoo()
    if model_id in _REGISTRY:
        return _REGISTRY[model_id]
    from . import user
    um = user.lookup(model_id)
    if um is not None:
        return ModelEntry(model_id, lambda: um.spec, um.build)
    known = ", ".join(sorted(_REGISTRY))
    hint = (" (a model built from a spec file is found through its build directory: --build DIR)"
            if not _plugin_failures else f"; plugins that failed to load: {'; '.join(_plugin_failures)}")
    raise UnknownModelError(f"unknown model {model_id!r}; known models: {known}{hint}")


def list_models() -> list[str]:
    _load_zoo()
    return sorted(_REGISTRY)


def get_spec(model_id: str) -> ModelSpec:
    return entry(model_id).spec()


def has_pretrained(model_id: str) -> bool:
    return entry(model_id).load_weights is not None


def load_model(model_id: str, pretrained: bool = True, cache_dir: Path | None = None) -> torch.nn.Module:
    """Build the model in eval mode: imported weights if `pretrained` and available,
    otherwise a seeded random init (deterministic for a given id)."""
    import torch

    e = entry(model_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(e.seed)
        model = e.build()
    if pretrained and e.load_weights is not None:
        e.load_weights(model, cache_dir)
    return model.eval()
