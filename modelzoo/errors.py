"""Typed errors raised by the zoo. Rooms below re-use them (arrows point down)."""
from __future__ import annotations


class MeshportError(Exception):
    """Base class of every error Meshport raises on purpose."""


class UnknownModelError(MeshportError, KeyError):
    """A model id that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class RegistryError(MeshportError):
    """A registry was used inconsistently, e.g. a duplicate name."""


class InputContractError(MeshportError, ValueError):
    """An input tensor does not match the model's declared input contract."""


class IntegrityError(MeshportError):
    """A downloaded or cached file failed its checksum or is incomplete."""


class WeightImportError(MeshportError):
    """Weights could not be imported: the source graph does not match the model."""
