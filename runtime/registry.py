"""One registry shape for every pluggable kind (runners, conversion steps, TFLite passes): a
name-keyed dict that refuses duplicates and answers an unknown name with the known ones."""
from __future__ import annotations

from typing import Generic, TypeVar

from .errors import RegistryError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """`what` names the kind in messages ("runner", "conversion step", …)."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def add(self, name: str, item: T) -> T:
        if name in self:
            raise RegistryError(f"{self.what} {name!r} is already registered")
        self[name] = item
        return item

    def get_known(self, name: str) -> T:
        if name not in self:
            raise RegistryError(f"unknown {self.what} {name!r}; known: {', '.join(sorted(self)) or 'none'}")
        return self[name]
