"""Objectives and constraints of a search, by name, with their directions."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from raynas.errors import ConfigError
from raynas.results.objectives import CHEAP, OBJECTIVES

Value = TypeVar("Value", float, np.ndarray)
"""One cost, or an array of them (the prescreen checks many children at once)."""
SEARCHABLE = tuple(name for name, o in OBJECTIVES.items() if o.searchable)
"""Objectives a search may optimise (the vocabulary is ``raynas.results.objectives``)."""
QUALITY = ("bn_score", "estimate", "accuracy")
"""What predicts a child's accuracy; each has its own evaluator, so a search optimises one."""


def parse_objectives(names: str | Sequence[str]) -> tuple[str, ...]:
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in items if n not in SEARCHABLE]
    if unknown or not items:
        raise ConfigError(f"unknown objective(s) {unknown or items}; valid objectives: {sorted(SEARCHABLE)}")
    if len(set(items)) != len(items):
        raise ConfigError(f"objectives must be distinct, got {items}")
    quality = [n for n in items if n in QUALITY]
    if len(quality) > 1:
        raise ConfigError(f"pick one of bn_score (the BN indicator), estimate (a training-free estimator) or "
                          f"accuracy (calibrated or proxy-trained), got {quality}")
    return tuple(items)


@dataclass(frozen=True)
class Constraint:
    """``name <= limit`` (or >=) on a cheap objective; violation > 0 means infeasible."""

    name: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        match = re.fullmatch(r"\s*(\w+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*", text)
        if match is None:
            raise ConfigError(f"constraint must look like 'flops<=2e8' or 'params>=1e5', got {text!r}")
        name, op, number = match.groups()
        if name not in CHEAP:
            raise ConfigError(f"constraints apply to cheap objectives {list(CHEAP)} before scoring, got {name!r}")
        return cls(name, op, _finite(number, text))

    def violation(self, value: Value) -> Value:
        """Relative amount by which ``value`` breaks the constraint (<= 0 when feasible)."""
        scale = max(abs(self.limit), 1e-12)
        return (value - self.limit) / scale if self.op == "<=" else (self.limit - value) / scale

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.limit:g}"


def _finite(number: str, text: str) -> float:
    """The limit of a constraint: a finite number, since inf or nan would pass any feasibility check."""
    rule = f"a constraint's limit must be a finite number such as 2e8, got {number!r} in {text!r}"
    try:
        limit = float(number)
    except ValueError:
        raise ConfigError(rule) from None
    if not math.isfinite(limit):
        raise ConfigError(rule)
    return limit
