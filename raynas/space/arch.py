"""An architecture: an immutable, hashable mapping from active dimension names to choices."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from raynas.space.dimension import Choice


class Arch(Mapping[str, Choice]):
    """An immutable child architecture.

    Only the dimensions that are active for this child are present, so two architectures that
    build the same network are equal and hash the same. Build one through
    ``SearchSpace.arch(...)``, which validates the values; this class itself trusts its input.
    """

    __slots__ = ("_items", "_lookup", "_hash")

    def __init__(self, items: tuple[tuple[str, Choice], ...]) -> None:
        self._items = items
        self._lookup = dict(items)
        self._hash = hash(items)

    def __getitem__(self, name: str) -> Choice:
        return self._lookup[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Arch):
            return self._items == other._items
        return NotImplemented

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._items)
        return f"Arch({body})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Arch, (self._items,))

    def to_dict(self) -> dict[str, Choice]:
        """A plain dict copy, in dimension order (for JSON)."""
        return dict(self._items)
