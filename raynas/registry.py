"""A registry of named plug-in records (search-space families, estimators): registered once, found by name.

Pure Python, so the lowest layer (``raynas.space``) can hold one. Registering an equal record
again does nothing; another record under a taken name is an error; an unknown name lists the
known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from raynas.errors import RaynasError

R = TypeVar("R")


class Registry(Generic[R]):
    """Records of one kind by name; errors are ``error`` and name the ``kind`` (plural: ``kinds``)."""

    def __init__(self, kind: str, kinds: str, error: type[RaynasError]) -> None:
        self.kind, self.kinds = kind, kinds
        self.error = error
        self._records: dict[str, R] = {}

    def register(self, name: str, record: R) -> R:
        known = self._records.get(name)
        if known is not None and known != record:
            raise self.error(f"{self.kind} {name!r} is already registered with other parts; pick another name")
        self._records[name] = record
        return record

    def get(self, name: str) -> R:
        if name not in self._records:
            raise self.error(f"unknown {self.kind} {name!r}; known {self.kinds}: {self.names()}")
        return self._records[name]

    def copy(self) -> Registry[R]:
        """An independent registry with the same records (a test registers into it, then drops it)."""
        twin: Registry[R] = Registry(self.kind, self.kinds, self.error)
        twin._records = dict(self._records)
        return twin

    def find(self, name: str) -> R | None:
        return self._records.get(name)

    def names(self, keep: Callable[[R], bool] | None = None) -> list[str]:
        """Registered names, sorted; with ``keep``, only those whose record it keeps."""
        return sorted(n for n, r in self._records.items() if keep is None or keep(r))
