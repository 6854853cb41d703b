"""Cost budgets spread over a space's cost range, and a shortlist of candidates per budget.

BigNAS reports one model per budget (S/M/L/XL); both main-job protocols produce one trained
model per target, so both take their budgets from here. Two shortlist rules:

- ``budget`` (the main job's default): candidates anywhere under a budget, ranked by the
  log-rank fusion of the search's score and the cost, so they reach up to the budget;
- ``band`` (BN-NAS as published): the best-scored children of the band between the previous
  budget and this one. On ``tiny`` the BN indicator prefers the narrowest children, so this
  shortlist sat at the cheap end of each band and lost to random search (benchmarks/RESULTS.md,
  "End to end").
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pandas as pd

from raynas.errors import ConfigError
from raynas.estimate.training_free.fusion import LogRankFusion
from raynas.search.costs import CheapObjectives
from raynas.search.objectives import CHEAP

SAMPLE = 4096
"""Random children drawn to read the cost distribution of a space."""


def cost_quantile_targets(cheap: CheapObjectives, n: int, cost_name: str = "flops", seed: int = 0) -> list[float]:
    """``n`` budgets at the 1/n, 2/n, ..., 1 quantiles of the space's cost distribution.

    Quantiles rather than an even split of [min, max]: costs are skewed (few children are near
    the largest), so even spacing would leave the cheapest band nearly empty. The last budget is
    the largest child's cost, so the last target is unconstrained.
    """
    _check_cost_name(cost_name)
    if n < 1:
        raise ConfigError(f"the number of targets must be >= 1, got {n}")
    rng = random.Random(seed)
    space = cheap.space
    archs = [space.min(), space.max()] + [space.sample(rng) for _ in range(SAMPLE)]
    costs = np.asarray(cheap(archs)[cost_name], dtype=float)
    return [float(np.quantile(costs, (i + 1) / n)) for i in range(n - 1)] + [float(costs.max())]


def check_targets(cheap: CheapObjectives, targets: Sequence[float], cost_name: str) -> list[float]:
    """Sorted budgets; refuses any budget below the smallest child's cost."""
    _check_cost_name(cost_name)
    if not targets:
        raise ConfigError("at least one cost target is needed")
    smallest = float(cheap([cheap.space.min()])[cost_name][0])
    low = [t for t in targets if t < smallest]
    if low:
        raise ConfigError(f"cost target(s) {low} on {cost_name} cannot be met: the smallest child of "
                          f"{cheap.space.name} has {cost_name}={smallest:,.6g}")
    return sorted(float(t) for t in targets)


def spread_shortlist(rows: pd.DataFrame, targets: Sequence[float], cost_name: str, per_target: int,
                     score: str = "bn_score") -> dict[float, list[str]]:
    """For each budget, the ``per_target`` best-scored architectures of its cost band.

    The band of target i is (target i-1, target i]; a band with too few candidates is filled with
    the best cheaper ones not yet taken, so every target gets candidates that meet its budget.
    Each architecture appears at most once over all targets.
    """
    if per_target < 1:
        raise ConfigError(f"shortlist size per target must be >= 1, got {per_target}")
    ranked = rows.dropna(subset=[score, cost_name]).sort_values(score, ascending=False).drop_duplicates("arch")
    taken: set[str] = set()
    shortlist: dict[float, list[str]] = {}
    lower = -np.inf
    for target in sorted(targets):
        fits = ranked[ranked[cost_name] <= target]
        band = fits[fits[cost_name] > lower]
        chosen = [a for a in band["arch"] if a not in taken][:per_target]
        chosen += [a for a in fits["arch"] if a not in taken and a not in chosen][:per_target - len(chosen)]
        taken.update(chosen)
        shortlist[target] = chosen
        lower = target
    return shortlist


def budget_shortlist(rows: pd.DataFrame, targets: Sequence[float], cost_name: str, per_target: int,
                     score: str = "bn_score") -> dict[float, list[str]]:
    """For each budget, the ``per_target`` children under it that best combine score and cost.

    A child may use any cost up to its budget. Among the children that fit, the rank by
    ``score`` and the rank by cost are fused as AZ-NAS fuses estimators (a sum of log-ranks), so
    a candidate must be well scored *and* use its budget: on small data from-scratch accuracy
    grows with size, which a score of narrow children alone does not see. Each architecture
    appears at most once over all targets (the smallest budget picks first).
    """
    if per_target < 1:
        raise ConfigError(f"shortlist size per target must be >= 1, got {per_target}")
    unique = rows.dropna(subset=[score, cost_name]).drop_duplicates("arch")
    taken: set[str] = set()
    shortlist: dict[float, list[str]] = {}
    for target in sorted(targets):
        fits = unique[(unique[cost_name] <= target) & ~unique["arch"].isin(taken)]
        columns = {score: fits[score].to_numpy(float), cost_name: fits[cost_name].to_numpy(float)}
        fused = LogRankFusion({score: 1.0, cost_name: 1.0}).fit(columns).score(columns) if len(fits) else np.zeros(0)
        order = np.argsort(-fused, kind="stable")[:per_target]
        chosen = [str(a) for a in fits["arch"].to_numpy()[order]]
        taken.update(chosen)
        shortlist[target] = chosen
    return shortlist


SHORTLIST_RULES = {"budget": budget_shortlist, "band": spread_shortlist}
"""``raynas run --shortlist``: how candidates are drawn from the searched children per budget."""


def _check_cost_name(cost_name: str) -> None:
    if cost_name not in CHEAP:
        raise ConfigError(f"a cost target applies to one of {list(CHEAP)}, got {cost_name!r}")
