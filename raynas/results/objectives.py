"""The objective vocabulary: every column a search optimises or a report plots, with its direction and unit.

One record per objective, low in the stack, so the search (Optuna directions), the Tune
adapter (``mode``), the prescreen, the reports (Pareto fronts, hypervolume, axis labels) and the
Parquet schema read the same direction and never translate between "maximize" and "max".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from raynas.errors import ResultsError

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Objective:
    """A result column that is better ``direction`` (lower: "min", higher: "max")."""

    name: str
    direction: Direction
    label: str
    unit: str
    scale: float = 1.0
    """Factor applied for display (accuracy 0.93 -> 93 %)."""
    cheap: bool = False
    """Computed from the architecture alone (analytic or a lookup table), before any scoring."""
    searchable: bool = True
    """May be an objective of a search (not only a report column)."""
    integral: bool = False
    """Counted, not measured: an int64 column in the Parquet schema (else float64)."""

    @property
    def optuna_direction(self) -> Literal["maximize", "minimize"]:
        """``"maximize"`` or ``"minimize"``, as Optuna and Ray Tune's Optuna searcher spell it."""
        return "maximize" if self.direction == "max" else "minimize"

    @property
    def sign(self) -> float:
        """-1 for "max", 1 for "min": ``sign * value`` is to be minimised."""
        return -1.0 if self.direction == "max" else 1.0

    @property
    def better(self) -> str:
        return "higher" if self.direction == "max" else "lower"


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("bn_score", "max", "BN score", "sum of mean |gamma|"),
    Objective("accuracy", "max", "top-1 accuracy", "%", 100.0),
    Objective("estimate", "max", "estimate", "the training-free estimator's score, --estimator"),
    Objective("top5", "max", "top-5 accuracy", "%", 100.0, searchable=False),
    Objective("flops", "min", "FLOPs", "M MACs", 1e-6, cheap=True, integral=True),
    Objective("params", "min", "params", "M", 1e-6, cheap=True, integral=True),
    Objective("latency_ms", "min", "latency", "ms", cheap=True),
    Objective("loss", "min", "loss", "cross-entropy", searchable=False),
)}
CHEAP = tuple(name for name, o in OBJECTIVES.items() if o.cheap)


def objective(name: str) -> Objective:
    """The record of ``name``; an unknown name lists the valid ones."""
    if name not in OBJECTIVES:
        raise ResultsError(f"unknown objective {name!r}; valid objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def check_objectives(names: Sequence[str]) -> list[str]:
    """Known, distinct objective names; anything else is a ``ResultsError`` naming the valid ones."""
    names = list(names)
    if not names:
        raise ResultsError(f"at least one objective is needed; valid objectives: {', '.join(OBJECTIVES)}")
    for name in names:
        objective(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ResultsError(f"each objective may appear once, got {repeated} more than once in {names}")
    return names


def directions_of(names: Sequence[str]) -> list[Direction]:
    """The direction ("min" or "max") of each named objective."""
    return [OBJECTIVES[n].direction for n in check_objectives(names)]
