"""Typed errors raised by the zoo, under the hierarchy of `runtime.errors` (re-exported here)."""
from __future__ import annotations

from runtime.errors import FileFormatError, IntegrityError, MeshportError, RegistryError, UsageError

__all__ = ["FileFormatError", "IntegrityError", "MeshportError", "RegistryError", "UsageError",
           "UnknownModelError", "UnknownWeightsError", "InputContractError", "WeightImportError"]


class UnknownModelError(MeshportError, KeyError):
    """A model id that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class InputContractError(MeshportError, ValueError):
    """An input tensor does not match the model's declared input contract."""


class WeightImportError(MeshportError):
    """Weights could not be imported: the source graph does not match the model."""


class UnknownWeightsError(RegistryError, KeyError):
    """A weight file name that the fetcher has no pin for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
