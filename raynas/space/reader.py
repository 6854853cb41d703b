"""Validated reading of YAML mappings: every error names the file, the key path and the rule."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raynas.errors import RaynasError, SpaceError


def read_yaml(path: str | os.PathLike[str], error: type[RaynasError] = SpaceError) -> Any:
    """The parsed YAML of ``path``. A missing or unreadable file, or bad syntax, raises ``error``
    with one line naming the file (and the line and column of bad syntax), not a YAML traceback."""
    file = Path(path)
    if not file.is_file():
        raise error(f"{file}: no such file")
    try:
        return yaml.safe_load(file.read_text())
    except UnicodeDecodeError as err:
        raise error(f"{file}: not a text file ({err.reason} at byte {err.start})") from err
    except yaml.MarkedYAMLError as err:
        context = f" ({err.context}{_at(err.context_mark)})" if err.context else ""
        raise error(f"{file}: malformed YAML{_at(err.problem_mark)}: {err.problem}{context}") from err
    except yaml.YAMLError as err:
        raise error(f"{file}: malformed YAML: {' '.join(str(err).split())}") from err


def _at(mark: yaml.Mark | None) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


@dataclass(frozen=True)
class Node:
    """A value read from a space file, with the file and key path that locate it."""

    value: Any
    source: str
    path: str = ""

    def error(self, rule: str) -> SpaceError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return SpaceError(f"{where}: {rule}")

    def child(self, key: str | int) -> "Node":
        """The value at ``key``; a missing key of a mapping is an error naming the key, not a KeyError."""
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
            if not isinstance(self.value, dict):
                raise self.error(f"must be a mapping with key {key!r}, got {type(self.value).__name__}")
            if key not in self.value:
                raise self.error(f"missing required key {key!r}")
        return Node(self.value[key], self.source, path)

    # --- mappings -----------------------------------------------------------------------
    def mapping(self, required: Sequence[str], optional: Sequence[str] = ()) -> "Node":
        """Check this is a mapping with the required keys and no unknown ones."""
        if not isinstance(self.value, dict):
            raise self.error(f"must be a mapping, got {type(self.value).__name__}")
        allowed = set(required) | set(optional)
        unknown = sorted(str(k) for k in self.value if k not in allowed)
        if unknown:
            raise self.error(f"unknown key(s) {unknown}; allowed keys: {sorted(allowed)}")
        missing = [k for k in required if k not in self.value]
        if missing:
            raise self.error(f"missing required key(s) {missing}")
        return self

    def get(self, key: str, default: Any = None) -> "Node":
        if key in self.value:
            return self.child(key)
        path = f"{self.path}.{key}" if self.path else key
        return Node(default, self.source, path)

    # --- scalars and lists --------------------------------------------------------------
    def integer(self, minimum: int | None = None) -> int:
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise self.error(f"must be an integer, got {self.value!r}")
        if minimum is not None and self.value < minimum:
            raise self.error(f"must be >= {minimum}, got {self.value}")
        return self.value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"must be true or false, got {self.value!r}")
        return self.value

    def one_of(self, allowed: Sequence[Any]) -> Any:
        if self.value not in allowed:
            raise self.error(f"must be one of {list(allowed)}, got {self.value!r}")
        return self.value

    def number(self, low: float, high: float) -> float:
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool):
            raise self.error(f"must be a number, got {self.value!r}")
        if not low <= self.value <= high:
            raise self.error(f"must be in [{low}, {high}], got {self.value}")
        return float(self.value)

    def choices(self, kind: str = "int", minimum: int = 1, odd: bool = False) -> tuple[Any, ...]:
        """A non-empty list of distinct choices (a scalar is a one-choice list).

        Integer choices must be strictly increasing, so that the first is the smallest child.
        """
        raw = self.value if isinstance(self.value, list) else [self.value]
        if not raw:
            raise self.error("must be a non-empty list of choices, got []")
        if kind == "str":
            if not all(isinstance(v, str) for v in raw):
                raise self.error(f"every choice must be a string, got {raw}")
            if len(set(raw)) != len(raw):
                raise self.error(f"choices must be distinct, got {raw}")
            return tuple(raw)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise self.error(f"every choice must be an integer, got {raw}")
        if any(v < minimum for v in raw):
            raise self.error(f"every choice must be >= {minimum}, got {raw}")
        if odd and any(v % 2 == 0 for v in raw):
            raise self.error(f"every choice must be odd, got {raw}")
        if any(b <= a for a, b in zip(raw, raw[1:])):
            raise self.error(f"choices must be strictly increasing, got {raw}")
        return tuple(raw)
