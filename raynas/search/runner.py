"""The half of a search that does not depend on its engine: both engines run through it.

A search is the same whether Optuna's ask/tell loop drives it (``raynas.search.study``) or Ray
Tune does (``raynas.search.tune_adapter``): the same checks before it starts, the same sampler
and objective directions, the same decision per trial before any scoring (cheap objectives,
constraints, the ``arch`` attribute), the same rows, the same values told to Optuna for an
infeasible trial, and the same ``run.json``. ``SearchRunner`` holds all of these; an engine only
decides when trials are asked, where they are scored, and when rows are written.
``tests/search/test_engine_contract.py`` runs both engines against one contract.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np
import optuna
import pandas as pd

from raynas.errors import ConfigError
from raynas.estimate import BNIndicator
from raynas.model_record import DataInfo, ModelRecord
from raynas.results.objectives import OBJECTIVES
from raynas.results.report import write_run_metadata
from raynas.search.arch_pool import ArchPoolSampler
from raynas.search.costs import CheapObjectives
from raynas.search.objectives import CHEAP, Constraint
from raynas.search.samplers import make_sampler, sampler_name
from raynas.space import Arch, SearchSpace

if TYPE_CHECKING:
    from raynas.search.pool import PoolConfig
    from raynas.search.study import SearchConfig

PENALTY = 0.0
"""Value told to Optuna for the unscored objective of an infeasible child (never stored)."""
ARCH_ATTR = "arch"
"""Trial user attribute holding the architecture's canonical key."""
COPIED = ("bn_score", "estimate", "accuracy", "split", "top5", "loss", "calib_images")
"""Measured columns a ``duplicate`` row copies from the row that evaluated its architecture."""
DUPLICATE = "duplicate"

Row = dict[str, Any]
"""A result row, or an evaluator's result for one child: column -> plain value."""


class Subject(Protocol):
    """What a search runs over: a trained checkpoint (``LoadedCheckpoint``), or a proxy setting
    (``raynas.bpe.search_evaluator.ProxySubject``). Rows carry its ``checkpoint_id``."""

    @property
    def space(self) -> SearchSpace: ...
    @property
    def data(self) -> DataInfo: ...
    @property
    def model(self) -> ModelRecord: ...
    @property
    def checkpoint_id(self) -> str: ...
    @property
    def path(self) -> Path | None: ...


class ConstrainedTrial(Protocol):
    """What the runner sets on a trial: ``optuna.trial.Trial`` in both engines."""

    @property
    def number(self) -> int: ...
    def set_user_attr(self, key: str, value: Any) -> None: ...
    def set_constraint(self, name: str, value: float) -> None: ...


@dataclass(frozen=True)
class Decided:
    """What the driver decides for a trial before any scoring."""

    trial: int
    arch: str
    cheap: Row
    """FLOPs, params (and latency_ms) as plain values."""
    feasible: bool
    decided_at: float

    def to_dict(self) -> Row:
        """Plain values (what a Tune trial's config carries)."""
        return asdict(self)


class SearchRunner:
    """A search's engine-independent parts, checked once at construction (clear errors, nothing run)."""

    def __init__(self, subject: Subject, config: SearchConfig, pool_config: PoolConfig,
                 latency_table: Any = None) -> None:
        named = config.objectives + tuple(c.name for c in config.parsed_constraints)
        if "latency_ms" in named and latency_table is None:
            raise ConfigError("latency_ms needs a latency table: pass --latency-table FILE (latency_table) "
                              "or measure one with `raynas latency`")
        # What the subject is, not the subject: a checkpoint's supernet must not travel with the
        # runner when Tune pickles its searcher.
        self.model, self.checkpoint_id, self.subject_path = subject.model, subject.checkpoint_id, subject.path
        self.config, self.pool_config = config, pool_config
        self.space = subject.space
        self.cheap = CheapObjectives(self.space, subject.data.num_classes, subject.data.in_channels, latency_table)
        check_satisfiable(self.cheap, config.parsed_constraints)

    # --- the study ----------------------------------------------------------------------
    @property
    def directions(self) -> list[Literal["maximize", "minimize"]]:
        """Optuna's direction of each objective, in the configured order."""
        return [OBJECTIVES[o].optuna_direction for o in self.config.objectives]

    def sampler(self) -> optuna.samplers.BaseSampler:
        """A fresh sampler, seeded from the search seed; with a pool, one that proposes only its members."""
        sampler = make_sampler(self.config.sampler, self.config.seed, self.config.population)
        if not self.config.pool:
            return sampler
        return ArchPoolSampler(sampler, self.space, self.config.pool, self.config.seed)

    def name_objectives(self, study: optuna.Study) -> None:
        """Name the study's objectives (optuna-dashboard labels its plots with them)."""
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(self.config.objectives))

    @property
    def depth_rule(self) -> str:
        """The depth rule the pool's BN indicator scores with (recorded in ``run.json``)."""
        return configured_depth_rule(self.pool_config)

    def write_run_file(self, out_dir: Path, **extra: Any) -> Path:
        """``run.json``: the model record, this search's settings, and what the engine adds."""
        return write_run_metadata(out_dir, self.model, run_id=self.config.run_id,
                                  checkpoint=None if self.subject_path is None else str(self.subject_path),
                                  checkpoint_id=self.checkpoint_id,
                                  search={**self.config.describe(), "depth_rule": self.depth_rule}, **extra)

    # --- one decision per trial ---------------------------------------------------------
    def decide(self, trials: Sequence[ConstrainedTrial], archs: Sequence[Arch]) -> list[Decided]:
        """Cost the children (vectorised), set each trial's constraints and ``arch`` attribute."""
        decided_at = time.time()
        cheap = self.cheap(list(archs))
        decisions = []
        for i, (trial, arch) in enumerate(zip(trials, archs)):
            values = {name: plain_value(column[i]) for name, column in cheap.items()}
            feasible = True
            for c in self.config.parsed_constraints:
                violation = c.violation(float(values[c.name]))
                trial.set_constraint(str(c), violation)
                feasible = feasible and violation <= 0
            key = self.space.key(arch)
            trial.set_user_attr(ARCH_ATTR, key)
            decisions.append(Decided(trial.number, key, values, feasible, decided_at))
        return decisions

    # --- results, rows and what Optuna is told -------------------------------------------
    def row(self, decided: Decided, result: Row) -> Row:
        """The Parquet row of one trial: its decision, then its result (an infeasible one keeps no score)."""
        if result.get("status") == "infeasible":
            result = {k: v for k, v in result.items() if k not in OBJECTIVES or k in CHEAP}
        return evaluation_row(self.config, self.checkpoint_id, decided.trial, decided.arch,
                              decided.decided_at, decided.cheap, result)

    def told_values(self, row: Row) -> list[float]:
        """What Optuna is told: the row's objectives, with ``PENALTY`` where an infeasible row has none."""
        return objective_values(self.config, row)


def penalties(objectives: Sequence[str], result: Row) -> dict[str, float]:
    """The unscored objectives of an infeasible result, each at ``PENALTY``: what Optuna is told
    for them (through Tune, which leaves a trial RUNNING while a metric is missing)."""
    return {o: PENALTY for o in objectives if o not in CHEAP and result.get(o) is None}


def duplicate_result(original: Row) -> Row:
    """The result of a trial whose architecture an earlier trial evaluated: its measured columns, copied."""
    return {"status": DUPLICATE, **measured(original)}


def evaluation_row(config: SearchConfig, checkpoint_id: str, trial: int, arch_key: str, started: float,
                   cheap: Row, result: Row) -> Row:
    """The Parquet row of one evaluated (or infeasible, or failed) trial."""
    return {"run_id": config.run_id, "trial": trial, "arch": arch_key, "evaluator": config.evaluator,
            "checkpoint_id": checkpoint_id, "sampler": sampler_name(config.sampler), "seed": config.seed,
            "started_at": started, **{k: plain_value(v) for k, v in cheap.items()}, **result,
            "finished_at": time.time()}


def objective_values(config: SearchConfig, row: Row) -> list[float]:
    """What Optuna is told: the row's objectives, with ``PENALTY`` where an infeasible row has none."""
    return [PENALTY if row["status"] == "infeasible" and name not in CHEAP else float(row[name])
            for name in config.objectives]


def check_satisfiable(cheap: CheapObjectives, constraints: tuple[Constraint, ...]) -> None:
    """Refuse constraints that no child can meet (costs grow with every choice)."""
    space = cheap.space
    ends = cheap([space.min(), space.max()])
    for c in constraints:
        best = float(ends[c.name].min() if c.op == "<=" else ends[c.name].max())
        if c.violation(best) > 0:
            extreme = "smallest" if c.op == "<=" else "largest"
            raise ConfigError(f"constraint {c} cannot be met: the {extreme} child of {space.name} has "
                              f"{c.name}={best:,.6g}")


def configured_depth_rule(pool_config: PoolConfig) -> str:
    """The depth rule a pool of this configuration scores with."""
    return str(pool_config.indicator.get("depth_rule", BNIndicator().depth_rule))


def measured(row: Row) -> Row:
    """The ``COPIED`` columns of an evaluated row that hold a value."""
    values = {k: plain_value(row.get(k)) for k in COPIED}
    return {k: v for k, v in values.items() if v is not None}


def records(frame: pd.DataFrame) -> list[Row]:
    """The frame's rows as dicts, keyed by column name."""
    return cast(list[Row], frame.to_dict("records"))


def plain_value(value: Any) -> Any:
    """A JSON- and Parquet-friendly scalar: numpy scalars unwrapped, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
