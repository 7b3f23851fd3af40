"""Meshport's model zoo: reference PyTorch models, their specs and weight importers.

`import modelzoo` imports no framework (not even torch): the zoo's model packages register the
first time the registry is asked (`list_models`, `get_spec`, `load_model`). The PyTorch reference
runner registers with the runtime's runners here.
"""
from .errors import (IntegrityError, InputContractError, MeshportError, RegistryError,
                     UnknownModelError, WeightImportError)
from .registry import entry, get_spec, has_pretrained, list_models, load_model, register_model
from .spec import ModelSpec, TensorSpec, Tolerance, WeightsSpec
from .user import load_spec_file, use_build_dir

from . import runner  # noqa: E402,F401  (registers the "pytorch" runner)

__all__ = [
    "IntegrityError", "InputContractError", "MeshportError", "RegistryError", "UnknownModelError",
    "WeightImportError", "ModelSpec", "TensorSpec", "Tolerance", "WeightsSpec", "entry", "get_spec",
    "has_pretrained", "list_models", "load_model", "load_spec_file", "register_model", "use_build_dir",
]
