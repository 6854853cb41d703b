"""Exact non-dominated sorting, fast enough for a million rows (a prescreen's sample).

``pareto_layers`` numbers the fronts of loss rows (every objective minimised): 0 for the
non-dominated rows, 1 for the front of the rest, ... Rows are deduplicated and sorted once
(lexicographically, the column with the most distinct values first, so the sort breaks fewest
ties); a sorted point can only be dominated by points before it, so each front is one sweep:
two objectives are a running minimum, three a staircase of the front so far, more a block-wise
check against the front so far. ``raynas.results.pareto.pareto_mask`` (reports), the search's
top-K ranking and the prescreen all use it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

BLOCK_ROWS = 4096
"""Rows checked together against the earlier rows' front (3 or more objectives)."""
PAIR_ROWS = 512
"""Rows compared all-pairs at once: keeps the (rows, block, objectives) temporaries small."""
FRONT_CHUNK = 32
"""Front points a block is checked against at once (4+ objectives); most points fall to the first."""


def pareto_layers(losses: np.ndarray, keep: int = 0) -> np.ndarray:
    """Front number of each row (0: non-dominated), -1 for rows not kept.

    Row a dominates b when a is no worse in every objective and better in one, so identical rows
    share a front. The whole front is always kept; then next fronts while fewer than ``keep`` rows
    are kept, the last one cut at ``keep`` in sort order. Rows with NaN are never kept.
    """
    ranks = np.full(len(losses), -1)
    finite = np.flatnonzero(np.isfinite(losses).all(axis=1))
    points = losses[finite][:, fewest_ties_first(losses[finite])]  # fronts do not depend on column order
    order = lex_order(points)
    ordered = points[order]
    starts = np.r_[True, np.any(ordered[1:] != ordered[:-1], axis=1)] if len(order) else np.zeros(0, bool)
    point_of_row = np.cumsum(starts) - 1
    ranks[finite[order]] = _peel(ordered[starts], np.bincount(point_of_row), keep)[point_of_row]
    return _cut(ranks, finite[order], keep)


def fewest_ties_first(values: np.ndarray, probe_rows: int = 10_000) -> list[int]:
    """Column order, most distinct values (among the first rows) first: the sort then breaks fewest ties."""
    distinct = [len(np.unique(column)) for column in values[:probe_rows].T]
    return sorted(range(values.shape[1]), key=lambda j: -distinct[j])


def lex_order(values: np.ndarray) -> np.ndarray:
    """Row indices in lexicographic order (stable): one sort of the first column, then a full sort
    of only the rows that tie on it (a million-row ``np.lexsort`` costs several of these)."""
    order = np.argsort(values[:, 0], kind="stable")
    if len(order) < 2:
        return order
    first = values[order, 0]
    same = first[1:] == first[:-1]
    tied = np.r_[same, False] | np.r_[False, same]
    if np.count_nonzero(tied) > len(values) // 4:
        return np.lexsort(values.T[::-1])
    rows = order[tied]
    order[tied] = rows[np.lexsort(values[rows].T[::-1])]
    return order


def _peel(points: np.ndarray, rows_per_point: np.ndarray, keep: int) -> np.ndarray:
    """Front numbers of sorted distinct points, peeling fronts until ``keep`` rows (at least one front)."""
    ranks = np.full(len(points), -1)
    alive = np.arange(len(points))
    rank = kept = 0
    while alive.size and (rank == 0 or kept < keep):
        on_front = front_of_sorted(points[alive])
        ranks[alive[on_front]] = rank
        kept += int(rows_per_point[alive[on_front]].sum())
        alive, rank = alive[~on_front], rank + 1
    return ranks


def _cut(ranks: np.ndarray, order: np.ndarray, keep: int) -> np.ndarray:
    """Drop rows of the last kept front beyond ``keep`` (never rows of the first front)."""
    kept = np.count_nonzero(ranks >= 0)
    last = ranks.max(initial=-1)
    if last <= 0 or kept <= keep:
        return ranks
    in_last = order[ranks[order] == last]
    ranks[in_last[keep - (kept - len(in_last)):]] = -1
    return ranks


def front_of_sorted(points: np.ndarray) -> np.ndarray:
    """Non-dominated mask of distinct points sorted lexicographically (every objective minimised)."""
    n, k = points.shape
    if n == 0 or k == 1:
        return np.arange(n) == 0
    if k == 2:
        return points[:, 1] < np.minimum.accumulate(np.r_[np.inf, points[:-1, 1]])
    return _sweep(points)


class _Earlier(Protocol):
    """The non-dominated points of the blocks swept so far."""

    def dominates(self, block: np.ndarray) -> np.ndarray: ...

    def add(self, front: np.ndarray) -> None: ...


def _sweep(points: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Front mask by blocks of sorted distinct points: a point's dominators all come before it.

    Each block is checked against the earlier blocks' front, then its survivors against each other
    (by smaller blocks, down to all pairs). A point dominated by an earlier point is dominated by
    an earlier front point (dominance is transitive), so only each block's front is remembered.
    """
    earlier: _Earlier = _Staircase() if points.shape[1] == 3 else _FrontSoFar(points.shape[1])
    on_front = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), block_rows):
        block = points[start:start + block_rows]
        alive = np.flatnonzero(~earlier.dominates(block))
        if len(alive) > PAIR_ROWS:
            alive = alive[_sweep(block[alive], max(PAIR_ROWS, block_rows // 8))]
        else:
            alive = alive[_undominated(block[alive])]
        on_front[start + alive] = True
        earlier.add(block[alive])
    return on_front


def _undominated(points: np.ndarray) -> np.ndarray:
    """All-pairs front mask of distinct points: q <= p everywhere, q != p, means q dominates p."""
    dominated = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), PAIR_ROWS):
        rows = points[start:start + PAIR_ROWS]
        no_worse = (points[None, :, :] <= rows[:, None, :]).all(axis=2)
        dominated[start:start + PAIR_ROWS] = no_worse.sum(axis=1) > 1  # each row is no worse than itself
    return ~dominated


class _Staircase:
    """Three objectives: the earlier points' (f2, f3) front, f2 ascending and f3 descending.

    Every earlier point has f1 no greater than the block's, so a point is dominated exactly when
    some earlier point has f2 and f3 no greater: the staircase step left of its f2.
    """

    def __init__(self) -> None:
        self.f2 = np.zeros(0)
        self.f3 = np.zeros(0)

    def dominates(self, block: np.ndarray) -> np.ndarray:
        if not len(self.f2):
            return np.zeros(len(block), dtype=bool)
        step = np.searchsorted(self.f2, block[:, 1], side="right") - 1
        lowest_f3 = np.where(step >= 0, self.f3[np.maximum(step, 0)], np.inf)
        return lowest_f3 <= block[:, 2]

    def add(self, front: np.ndarray) -> None:
        f2, f3 = np.r_[self.f2, front[:, 1]], np.r_[self.f3, front[:, 2]]
        order = np.lexsort((f3, f2))
        f2, f3 = f2[order], f3[order]
        step = f3 < np.minimum.accumulate(np.r_[np.inf, f3[:-1]])
        self.f2, self.f3 = f2[step], f3[step]


class _FrontSoFar:
    """Four or more objectives: the earlier front itself, compared in full."""

    def __init__(self, k: int) -> None:
        self.points = np.zeros((0, k))

    def dominates(self, block: np.ndarray) -> np.ndarray:
        """Checked against the front in chunks, each only for the points no chunk has dominated yet."""
        open_ = np.arange(len(block))
        for start in range(0, len(self.points), FRONT_CHUNK):
            front = self.points[start:start + FRONT_CHUNK]
            hit = np.any(np.all(front[None, :, :] <= block[open_][:, None, :], axis=2), axis=1)
            open_ = open_[~hit]
            if not open_.size:
                break
        dominated = np.ones(len(block), dtype=bool)
        dominated[open_] = False
        return dominated

    def add(self, front: np.ndarray) -> None:
        self.points = np.vstack([self.points, front])


# --- the prescreen ---------------------------------------------------------------------------
