"""Meshport's model zoo: reference PyTorch models, their specs and weight importers.

Knows nothing about runtimes. `import modelzoo` imports torch but no heavy framework.
"""
from .errors import (IntegrityError, InputContractError, MeshportError, RegistryError,
                     UnknownModelError, WeightImportError)
from .registry import entry, get_spec, has_pretrained, list_models, load_model, register_model
from .spec import ModelSpec, TensorSpec, Tolerance, WeightsSpec

# Importing the model folders registers them.
from . import attention_mesh, attention_mesh_paper, face_detector, face_mesh_cascade  # noqa: E402,F401

__all__ = [
    "IntegrityError", "InputContractError", "MeshportError", "RegistryError", "UnknownModelError",
    "WeightImportError", "ModelSpec", "TensorSpec", "Tolerance", "WeightsSpec", "entry", "get_spec",
    "has_pretrained", "list_models", "load_model", "register_model",
]
