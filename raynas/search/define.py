"""Define-by-run: an Optuna trial suggests an architecture, one parameter per active dimension."""

from __future__ import annotations

from typing import Any

from raynas.space import Arch, SearchSpace


def suggest_arch(trial: Any, space: SearchSpace) -> Arch:
    """Suggest each dimension that is active given the choices made so far.

    Parameter names are the dimension names, so Optuna, Parquet and exported configs agree.
    Works with an ``optuna.Trial`` and with Ray Tune's define-by-run ``OptunaSearch`` trial.
    """
    values: dict[str, Any] = {}
    for dim in space.dims:
        if dim.is_active(values):
            values[dim.name] = trial.suggest_categorical(dim.name, list(dim.choices))
    return space.arch(values)
