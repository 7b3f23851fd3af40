"""The error hierarchy. Everything Meshport raises on purpose is a `MeshportError`; the CLI turns
those (and only those) into a one-line message and exit status 2 — anything else is a bug and keeps
its traceback. Rooms define their own kinds under these bases."""
from __future__ import annotations


class MeshportError(Exception):
    """Base class of every error Meshport raises on purpose."""


class UsageError(MeshportError, ValueError):
    """A command or call was given values it cannot use (unknown option value, missing argument)."""


class RegistryError(MeshportError):
    """A registry was used inconsistently: a duplicate name, or a name nobody registered."""


class IntegrityError(MeshportError):
    """A downloaded, cached or stored file failed its checksum or is incomplete."""


class FileFormatError(MeshportError):
    """A file is missing, unreadable, or not what it should be (corrupt JSON, not a TFLite model…)."""


class MissingFileError(FileFormatError, FileNotFoundError):
    """A file or directory that was named (an image, a key, a store, a pulled version) does not exist."""


class OutputWriteError(MeshportError, OSError):
    """An output could not be written (permissions, a full disk, a path that is a directory)."""
