"""Pareto fronts and hypervolume over result rows, with each objective's direction built in.

Every function turns its objectives into minimisation first (a "max" column is negated), so the
algorithms below only ever minimise.

- ``pareto_mask`` marks the non-dominated rows. Row ``a`` dominates ``b`` when ``a`` is no worse
  in every objective and strictly better in at least one; two identical rows therefore do not
  dominate each other and are both on the front. It is front 0 of ``raynas.results.fronts``'s
  exact non-dominated sorting (the one the search's top-K and the prescreen use too).
- ``hypervolume`` is the volume dominated by the rows and bounded by a reference point, exact in
  every dimension. One objective is a length; two are a sweep over the sorted front. Three or
  more use Optuna's exact WFG implementation (``optuna._hypervolume.compute_hypervolume``, present
  in Optuna 5.0); because that module is private, an exact slicing algorithm (HSO: slice along
  the last objective, recurse on the rest) takes over if the import ever fails. Slicing is
  exponential in the number of objectives, which is fine for the 3 or 4 that NAS reports use.
- The default reference point is the nadir, the worst value of each objective over all the
  given rows, pushed 1% of that objective's range further out. The margin keeps the extreme
  front members from contributing zero volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from raynas.errors import ResultsError
from raynas.results.fronts import pareto_layers
from raynas.results.objectives import OBJECTIVES, check_objectives, directions_of

OBJECTIVE_DIRECTIONS = {name: o.direction for name, o in OBJECTIVES.items()}
"""Each objective's direction ("min" or "max"), from ``raynas.results.objectives``."""
DIRECTIONS = ("min", "max")
REFERENCE_MARGIN = 0.01


def as_losses(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """A float (n, k) copy in which every objective is minimised: "max" columns are negated."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ResultsError(f"values must be a 2-D (rows, objectives) array, got shape {array.shape}")
    dirs = list(directions)
    if len(dirs) != array.shape[1]:
        raise ResultsError(f"need one direction per objective column ({array.shape[1]}), got {dirs}")
    bad = [d for d in dirs if d not in DIRECTIONS]
    if bad:
        raise ResultsError(f"a direction must be one of {list(DIRECTIONS)}, got {bad[0]!r}")
    signs = np.array([-1.0 if d == "max" else 1.0 for d in dirs])
    return array * signs


# --- fronts -------------------------------------------------------------------------------
def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """True for each row of ``values`` (n, k) that no other row dominates.

    A row holding NaN is never on the front and dominates nothing: its position in the
    trade-off is unknown. ``pareto_front`` drops such rows before calling this.
    """
    return pareto_layers(as_losses(values, directions)) == 0

def usable_rows(df: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """Rows with status "ok" (when there is a status column) and a value for every objective.

    Failed and infeasible rows have no trustworthy metrics, and a missing objective has no place
    in the trade-off, so neither may shape the front or the reference point.
    """
    names = check_objectives(objectives)
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise ResultsError(f"objective column {missing[0]!r} is not in the table; columns: {', '.join(df.columns)}")
    ok = df["status"].eq("ok") if "status" in df.columns else pd.Series(True, index=df.index)
    values = df[names].apply(pd.to_numeric, errors="coerce")
    return df[ok & values.notna().all(axis=1)]


def pareto_front(df: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The non-dominated usable rows of ``df``, sorted ascending by the first objective (then the rest)."""
    names = check_objectives(objectives)
    rows = usable_rows(df, names)
    mask = pareto_mask(rows[names].to_numpy(dtype=np.float64), directions_of(names))
    return rows[mask].sort_values(names, kind="stable")


# --- hypervolume --------------------------------------------------------------------------
def reference_point(values: np.ndarray, directions: Sequence[str], margin: float = REFERENCE_MARGIN) -> np.ndarray:
    """The nadir of ``values`` pushed ``margin`` of each objective's range outwards, in the
    objectives' own units and directions. A zero range is pushed by ``margin`` of the value's
    magnitude (or by ``margin`` itself at zero) so that a lone point still has volume."""
    losses = as_losses(values, directions)
    losses = losses[~np.isnan(losses).any(axis=1)]
    if len(losses) == 0:
        raise ResultsError("a reference point needs at least one row without NaN objectives")
    worst, best = losses.max(axis=0), losses.min(axis=0)
    span = worst - best
    span = np.where(span > 0, span, np.where(worst != 0, np.abs(worst), 1.0))
    return _from_losses(worst + margin * span, directions)


def _from_losses(losses: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return losses * signs


def hypervolume(values: np.ndarray, directions: Sequence[str],
                reference: Sequence[float] | np.ndarray | None = None) -> float:
    """The volume that the rows of ``values`` dominate, bounded by ``reference``.

    ``reference`` is in the objectives' own units (default: ``reference_point(values, directions)``).
    Rows with NaN, and rows not strictly better than the reference in every objective, add nothing.
    """
    losses = as_losses(values, directions)
    ref_values = reference_point(values, directions) if reference is None else np.asarray(reference, dtype=float)
    if ref_values.shape != (losses.shape[1],):
        raise ResultsError(f"the reference point needs {losses.shape[1]} values, got {list(np.atleast_1d(ref_values))}")
    ref = as_losses(ref_values[None, :], directions)[0]
    inside = losses[~np.isnan(losses).any(axis=1)]
    inside = inside[(inside < ref).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    front = inside[pareto_mask(inside, ["min"] * len(ref))]
    return float(_hv_min(np.unique(front, axis=0), ref))


def _hv_min(front: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of mutually non-dominated minimisation points, all strictly inside ``ref``."""
    if front.shape[1] == 1:
        return float(ref[0] - front[:, 0].min())
    if front.shape[1] == 2:
        return _hv_2d(front, ref)
    try:
        from optuna._hypervolume import compute_hypervolume
    except ImportError:  # private module: keep an exact algorithm of our own
        return _hv_slicing(front, ref)
    return float(compute_hypervolume(front, ref, assume_pareto=True))


def _hv_2d(front: np.ndarray, ref: np.ndarray) -> float:
    """Sorted by f0 ascending, a 2-D front has f1 descending: add one rectangle per point."""
    points = front[np.argsort(front[:, 0])]
    right = np.r_[points[1:, 0], ref[0]]
    return float(np.sum((right - points[:, 0]) * (ref[1] - points[:, 1])))


def _hv_slicing(points: np.ndarray, ref: np.ndarray) -> float:
    """HSO: cut the box into slabs along the last objective; each slab's volume is its thickness
    times the (k-1)-D hypervolume of the points that reach into it."""
    if points.shape[1] <= 2:
        front = points[pareto_mask(points, ["min"] * points.shape[1])]
        return float(ref[0] - points[:, 0].min()) if points.shape[1] == 1 else _hv_2d(front, ref)
    last = np.unique(points[:, -1])
    bounds = np.r_[last, ref[-1]]
    total = 0.0
    for low, high in zip(bounds[:-1], bounds[1:]):
        below = points[points[:, -1] <= low, :-1]
        total += (high - low) * _hv_slicing(below, ref[:-1])
    return total
