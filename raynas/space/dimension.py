"""One searchable dimension of a space: a name, its ordered choices, and when it is active."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Choice = int | float | str


@dataclass(frozen=True)
class Dimension:
    """A named categorical dimension.

    Choices are ordered from the smallest child to the largest, so ``choices[0]`` is what
    ``SearchSpace.min()`` picks and ``choices[-1]`` what ``max()`` picks.

    A dimension with a ``parent`` is conditional: it exists only while
    ``arch[parent] > threshold`` (for example, the kernel of block 3 exists only while the
    stage depth is above 3).
    """

    name: str
    choices: tuple[Choice, ...]
    kind: str
    parent: str | None = None
    threshold: int = 0

    def is_active(self, values: dict[str, Any]) -> bool:
        """True when this dimension exists for a child with these (partial) values."""
        if self.parent is None:
            return True
        return values[self.parent] > self.threshold

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices; raises ValueError when absent."""
        return self.choices.index(value)
