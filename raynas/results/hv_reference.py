"""A hypervolume reference point fixed by the space and the objectives, not by the rows.

A reference derived from the rows (their nadir) moves with every run, so a normalized
hypervolume of 0.94 says nothing about another run's 0.91. Here each objective's reference is
its **worst possible value**, wherever one is known:

- ``flops`` and ``params``: the cost of the space's largest child (its ``max()``), pushed out by
  1% of the space's cost range (from its ``min()``) so that the largest child still adds volume;
- ``accuracy`` and ``top5``: 0, with 1 as the best value, again pushed out by 1% of that range;
- ``bn_score``: 0 (a mean |gamma| is never negative); its best value is not known in advance.

An objective without a known worst value (``latency_ms``, ``loss``) falls back to the rows'
nadir, and the normalized hypervolume's ideal corner takes the rows' best value wherever the
objective's best is unknown. ``HypervolumeBox.sources`` says, per objective, which was used, and
a reference passed by the user (``--reference``) overrides everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from raynas.cost import CostModel
from raynas.errors import ResultsError
from raynas.results.pareto import REFERENCE_MARGIN, reference_point

UNIT_BOUNDS = {"accuracy": (1.0, 0.0), "top5": (1.0, 0.0), "bn_score": (None, 0.0)}
"""Objective -> (best, worst) known without the space: a top-1 lies in [0, 1], a BN score >= 0."""


@dataclass(frozen=True)
class HypervolumeBox:
    """The reference point and the ideal corner of a normalized hypervolume, in objective units."""

    reference: np.ndarray
    ideal: np.ndarray
    sources: tuple[str, ...]
    """Per objective: "space", "bound", "rows" or "user": where its reference value came from."""


def objective_bounds(name: str, cost: CostModel) -> tuple[float | None, float | None]:
    """(best, worst) of objective ``name`` over every child of ``cost.space``; None where not known."""
    if name in ("flops", "params"):
        space = cost.space
        costs = cost.costs([space.min(), space.max()])[name]
        return float(costs.min()), float(costs.max())
    return UNIT_BOUNDS.get(name, (None, None))


def hypervolume_box(names: Sequence[str], directions: Sequence[str], values: np.ndarray, cost: CostModel,
                    user: Sequence[float] | None = None) -> HypervolumeBox:
    """The fixed reference of ``names`` (``user``'s when given) and the ideal corner, per objective."""
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    from_rows = reference_point(values, directions)
    rows_best = (values * signs).min(axis=0) * signs
    reference, ideal, sources = [], [], []
    for i, name in enumerate(names):
        best, worst = objective_bounds(name, cost)
        ideal.append(rows_best[i] if best is None else best)
        if worst is None:
            reference.append(from_rows[i])
            sources.append("rows")
            continue
        span = abs(best - worst) if best is not None else 0.0
        reference.append(worst + signs[i] * REFERENCE_MARGIN * span)
        sources.append("space" if name in ("flops", "params") else "bound")
    if user is not None:
        if len(user) != len(names):
            raise ResultsError(f"--reference needs one value per objective {list(names)}, got {list(user)}")
        reference, sources = list(map(float, user)), ["user"] * len(names)
    return HypervolumeBox(np.array(reference, dtype=float), np.array(ideal, dtype=float), tuple(sources))


def normalized_hypervolume(volume: float, box: HypervolumeBox, directions: Sequence[str]) -> float:
    """``volume`` over the volume of the box from the ideal corner to the reference: unit-free, in [0, 1]."""
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    size = float(np.prod(box.reference * signs - box.ideal * signs))
    return volume / size if size > 0 else 0.0
