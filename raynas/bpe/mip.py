"""Minimum Importance Pruning (MIP) over BPE settings, with Ray Tune trials and an Optuna sampler.

Zheng et al. (CVPR 2020) describe MIP but never released it; this is built from the
description. Each round:

1. runs K BPE trials in parallel as Ray Tune trials (``BPETrial``); an Optuna sampler
   (``OptunaSearch`` with a define-by-run space) picks the hyper-parameters that are still free,
   the fixed ones ride along as constants. The round's study is warm-started with every earlier
   trial that agrees with the current fixed values, so the sampler keeps what it learnt;
2. fits fANOVA (``optuna.importance.FanovaImportanceEvaluator``, a random forest) on the
   objective of all trials so far, over the free hyper-parameters (``param_importances``);
3. fixes the least important one at its **cheapest** value, as the paper does: the tried value
   whose trials had the lowest mean measured cost (``fix_at: cheapest``, the default), or at its
   best value, the one with the best mean objective (``fix_at: best``) (``prune_decision``,
   pure: no Ray, no training).

It stops when one free hyper-parameter is left or the budget (rounds, total trials, seconds;
checked between rounds) is spent. The chosen setting is the best trial that agrees with every
fixed value; its tau and cost are that trial's own measurements.

**Objective.** ``objective = tau - cost_weight * cost_seconds / max(cost_seconds)``, the max over
all trials so far, so the cost term is in [0, cost_weight]. ``cost_weight = 0`` (the default)
is tau alone. A trial without a rank correlation (a failed trial, or constant scores) counts
as tau = 0: no better than a random ranking. The Optuna sampler sees ``tau`` (``cost_weight = 0``)
or the pair (tau max, cost min) as two objectives (``cost_weight > 0``), because the
normalised cost of one trial is unknown until the round ends.

**Unexplored and tied hyper-parameters.** A free hyper-parameter that every trial so far ran at
the same value has no evidence either way (fANOVA scores it 0), so it is not pruned while an
explored one is left. Equal importances (for example with a constant objective, where fANOVA has
no variance to split) fix the hyper-parameter declared first (``BPESpace.names`` order); equal
mean objectives pick the value listed first (choices are increasing, so usually the cheaper one).

Outputs under ``out_dir``: ``trials/round-NNN.parquet`` (one closed file per round, one row
per trial, ``TRIAL_SCHEMA``; read them all with ``read_trials``), ``bpe_result.json`` (the chosen
setting, its tau and cost, every round's importances and decision), and ``tune/`` (Tune's own
experiment folders).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pyarrow as pa
import pyarrow.parquet as pq
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from raynas.bpe.evaluate import (
    ERROR,
    OK,
    BPETrial,
    Evaluate,
    ProxyTask,
    SupernetEvaluation,
)
from raynas.bpe.reference import Reference, load_reference
from raynas.bpe.space import (
    NATIVE,
    BPESpace,
    MIPConfig,
    Setting,
    load_bpe_space,
    setting_key,
)
from raynas.bpe.standalone import StandaloneEvaluation, StandaloneTask
from raynas.data import DataSplits, load_data
from raynas.errors import ConfigError, TrainingError
from raynas.logs import format_seconds, get_logger
from raynas.ray_env import check_resources, ensure_ray
from raynas.results.schema import conform
from raynas.search.samplers import make_sampler

logger = get_logger(__name__)

TRIALS_DIR = "trials"
RESULT_FILE = "bpe_result.json"
SCHEMA_VERSION = "2"
NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"
METRIC = "tau_objective"
"""What a trial reports to Optuna: its metric (tau or rho, ``MIPConfig.metric``), 0 for a trial without one."""

TRIAL_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32()), pa.field("trial", pa.int32()), pa.field("trial_id", pa.string()),
        pa.field("epochs", pa.int64()), pa.field("batch_size", pa.int64()),
        pa.field("resolution", pa.int64()),  # null = native (the space's own resolutions)
        pa.field("width_multiplier", pa.float64()), pa.field("data_fraction", pa.float64()),
        pa.field("mode", pa.string()), pa.field("sandwich_size", pa.int64()), pa.field("calib_images", pa.int64()),
        pa.field("lr", pa.float64()),
        pa.field("channels", pa.int64()), pa.field("cells_per_stage", pa.int64()),  # standalone proxies only
        pa.field("weight_decay", pa.float64()), pa.field("augment", pa.bool_()),
        pa.field("cutout", pa.int64()), pa.field("amp", pa.string()),
        pa.field("estimator", pa.string()), pa.field("seed", pa.int64()),
        pa.field("num_reference", pa.int64()), pa.field("train_images", pa.int64()),
        pa.field("tau", pa.float64()), pa.field("rho", pa.float64()), pa.field("cost_seconds", pa.float64()),
        pa.field("train_seconds", pa.float64()), pa.field("score_seconds", pa.float64()),
        pa.field("seconds_per_arch", pa.float64()), pa.field("failed_archs", pa.int64()),  # standalone only (CPU s)
        pa.field("device", pa.string()), pa.field("cpu_threads", pa.int64()),
        pa.field("status", pa.string()), pa.field("error", pa.string()),
    ],
    metadata={b"raynas.bpe.schema_version": SCHEMA_VERSION.encode()},
)
"""One row per BPE trial, of either proxy kind (a kind leaves the other's hyper-parameters null).
Versioned: a reader checks ``raynas.bpe.schema_version``."""
ADDED_TRIAL_COLUMNS = {"cutout": None, "amp": None}
"""Columns added to schema 2 later: null in a round file written before them."""

Record = Mapping[str, Any]


# --- the pure pruning decision ----------------------------------------------------------------
@dataclass(frozen=True)
class PruneDecision:
    """Which hyper-parameter to fix, at which value, and the evidence for it."""

    param: str
    value: Any
    importances: dict[str, float]
    value_means: dict[str, float]
    """Per tried value of ``param`` (as strings, for JSON): its mean cost seconds under
    ``fix_at="cheapest"``, its mean objective under ``fix_at="best"``."""
    fix_at: str = "cheapest"


def trial_objectives(records: Sequence[Record], cost_weight: float = 0.0, column: str = "tau") -> np.ndarray:
    """The metric ``column`` (0 where missing) minus ``cost_weight`` x cost / max cost, one value per record."""
    tau = np.array([_finite_or_zero(r.get(column)) for r in records], dtype=float)
    if cost_weight == 0 or not records:
        return tau
    cost = np.array([_finite_or_zero(r.get("cost_seconds")) for r in records], dtype=float)
    top = cost.max()
    return tau - cost_weight * (cost / top if top > 0 else cost)


def param_importances(records: Sequence[Record], free: Sequence[str], choices: Mapping[str, Sequence[Any]],
                      objectives: Sequence[float] | np.ndarray, seed: int = 0) -> dict[str, float]:
    """fANOVA importance of each free hyper-parameter for the objective, over all records.

    The records become a throw-away Optuna study (``create_trial`` + ``add_trials``). A constant
    objective, or free values that never vary, leave nothing to explain: every importance is 0.
    """
    if len(records) < 2 or float(np.ptp(np.asarray(objectives, dtype=float))) == 0.0:
        return {p: 0.0 for p in free}
    distributions: dict[str, BaseDistribution] = {p: CategoricalDistribution(list(choices[p])) for p in free}
    with _optuna_quiet():
        study = optuna.create_study(direction="maximize")
    study.add_trials([
        optuna.trial.create_trial(params={p: r[p] for p in free}, distributions=distributions, value=float(v))
        for r, v in zip(records, objectives)
    ])
    try:
        found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed), params=list(free))
    except RuntimeError as err:  # no free value varies across the trials: no split explains anything
        if "zero total variance" not in str(err):
            raise
        return {p: 0.0 for p in free}
    return {p: float(found.get(p, 0.0)) for p in free}


def best_value(records: Sequence[Record], param: str, choices: Sequence[Any],
               objectives: Sequence[float]) -> tuple[Any, dict[str, float]]:
    """The tried value of ``param`` with the best mean objective (ties: the first in ``choices``)."""
    means = {}
    for value in choices:
        picked = [v for r, v in zip(records, objectives) if r[param] == value]
        if picked:
            means[value] = float(np.mean(picked))
    if not means:
        raise ConfigError(f"no trial used any choice of {param!r} {list(choices)}; cannot fix it")
    best = max(means.values())
    value = next(v for v in choices if v in means and means[v] == best)
    return value, {str(k): v for k, v in means.items()}


def cheapest_value(records: Sequence[Record], param: str, choices: Sequence[Any]) -> tuple[Any, dict[str, float]]:
    """The tried value of ``param`` whose trials cost least on average (measured seconds; ties: first in ``choices``).

    Least important means it barely moves the ranking, so its cost is what it still decides.
    """
    costs = [_finite_or_zero(r.get("cost_seconds")) for r in records]
    value, negated = best_value(records, param, choices, [-c for c in costs])
    return value, {k: -v for k, v in negated.items()}


FIX_AT: dict[str, Callable[..., tuple[Any, dict[str, float]]]] = {"cheapest": lambda records, param, choices, objectives: cheapest_value(records, param, choices),
          "best": best_value}
"""How MIP picks the value of the hyper-parameter it prunes."""


def prune_decision(records: Sequence[Record], free: Sequence[str], choices: Mapping[str, Sequence[Any]],
                   cost_weight: float = 0.0, seed: int = 0, fix_at: str = "cheapest",
                   column: str = "tau") -> PruneDecision:
    """MIP's step: the least important free hyper-parameter and the value to fix it at.

    ``records`` are trial rows (each hyper-parameter, ``tau``, ``cost_seconds``); ``free`` lists
    the hyper-parameters still searched, in declaration order, which breaks importance ties. Only
    a hyper-parameter seen with two or more values can be pruned (unless none was): fANOVA gives
    an unexplored one importance 0 for lack of evidence, not because it does not matter.
    """
    if not free:
        raise ConfigError("no free hyper-parameter left to prune")
    objectives = trial_objectives(records, cost_weight, column)
    importances = param_importances(records, free, choices, objectives, seed)
    explored = [p for p in free if len({r[p] for r in records}) > 1] or list(free)
    lowest = min(importances[p] for p in explored)
    param = next(p for p in explored if importances[p] == lowest)
    value, evidence = FIX_AT[fix_at](records, param, choices[param], objectives)
    return PruneDecision(param, value, importances, evidence, fix_at)


def _finite_or_zero(value: Any) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


# --- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundSummary:
    round: int
    trials: int
    free: tuple[str, ...]
    fixed: dict[str, Any]
    best_score: float
    """The round's best value of the configured metric (``MIPConfig.metric``: tau or rho)."""
    seconds: float
    decision: PruneDecision | None = None


@dataclass(frozen=True)
class BPEResult:
    """The chosen BPE setting with its measured tau, rho and cost, and how MIP got there.

    ``sampling`` and ``depth_rule`` describe supernet proxies; a standalone one has neither (None).
    """

    setting: Setting
    tau: float
    rho: float
    cost_seconds: float
    device: str
    trial: int
    rounds: tuple[RoundSummary, ...]
    stop_reason: str
    seconds: float
    out_dir: Path
    trials_dir: Path
    result_path: Path
    sampling: str | None
    """How the proxy supernets sampled their children (``TrainConfig.sampling``)."""
    depth_rule: str | None
    """How the BN indicator combined op scores (``BNIndicator.depth_rule``)."""
    records: tuple[dict[str, Any], ...] = field(repr=False, default=())

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload.pop("records")
        return {k: str(v) if isinstance(v, Path) else v for k, v in payload.items()}


def read_trials(out_dir: str | os.PathLike[str]) -> pa.Table:
    """Every trial row of a BPE run (all round files), checked against ``TRIAL_SCHEMA``."""
    folder = Path(out_dir) / TRIALS_DIR
    files = sorted(folder.glob("round-*.parquet"))
    if not files:
        raise ConfigError(f"{folder} holds no BPE trial files (round-*.parquet)")
    tables = [pq.read_table(f) for f in files]
    for f, t in zip(files, tables):
        version = (t.schema.metadata or {}).get(b"raynas.bpe.schema_version", b"?").decode()
        if version != SCHEMA_VERSION:
            raise ConfigError(f"{f}: BPE trial schema version {version}, this raynas reads {SCHEMA_VERSION}")
    return pa.concat_tables([conform(t, TRIAL_SCHEMA, ADDED_TRIAL_COLUMNS) for t in tables])


def write_round(trials_dir: Path, round_index: int, rows: Sequence[Record]) -> Path:
    """One closed Parquet file per round: written to a temp name, then ``os.replace``d."""
    trials_dir.mkdir(parents=True, exist_ok=True)
    stored = [{**r, "resolution": None if r["resolution"] == NATIVE else int(r["resolution"])} for r in rows]
    stored = [{name: row.get(name) for name in TRIAL_SCHEMA.names} for row in stored]
    table = pa.Table.from_pylist(stored, schema=TRIAL_SCHEMA)
    target = trials_dir / f"round-{round_index:03d}.parquet"
    tmp = trials_dir / f".tmp-{uuid.uuid4().hex}.parquet"
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return target


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


# --- the MIP loop -----------------------------------------------------------------------------
def run_bpe(
    bpe_space: BPESpace | str | os.PathLike[str],
    reference: Reference | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    data: str | DataSplits | None = None,
    rounds: int | None = None,
    trials_per_round: int | None = None,
    max_trials: int | None = None,
    max_seconds: float | None = None,
    cost_weight: float | None = None,
    sampler: str | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    use_gpu: bool = False,
    keep_runs: bool = False,
    sampling: str | None = None,
    depth_rule: str | None = None,
    verbose: bool = True,
) -> BPEResult:
    """Search the BPE setting whose ranking of ``reference`` agrees best with its accuracies.

    ``bpe_space`` and ``reference`` are objects or file paths. ``data`` overrides the file's
    ``data`` (a DATA string or loaded splits). Budget arguments left as None keep the file's
    ``mip:`` values. Each trial reserves ``cpus_per_trial`` CPUs (and one GPU with ``use_gpu``).
    ``sampling`` (how proxy supernets sample children) and ``depth_rule`` (how the BN indicator
    combines op scores) left as None take the file's ``train: {sampling: ...}``, then the target
    space's defaults (``raynas.search.recipes``); both are recorded in ``bpe_result.json``.
    """
    started = time.monotonic()
    bpe = bpe_space if isinstance(bpe_space, BPESpace) else load_bpe_space(bpe_space)
    mip = bpe.mip.replace(rounds=rounds, trials_per_round=trials_per_round, max_trials=max_trials,
                          max_seconds=max_seconds, cost_weight=cost_weight, sampler=sampler)
    ref = reference if isinstance(reference, Reference) else load_reference(reference, bpe.target_space)
    ref = search_reference(bpe, ref)
    out = Path(out_dir)
    trials_dir = out / TRIALS_DIR
    if any(trials_dir.glob("round-*.parquet")):
        raise ConfigError(f"{out} already holds BPE trials ({trials_dir}); choose a new output folder")
    runs = str((out / "runs").resolve())
    task: ProxyTask | StandaloneTask  # built (and so checked) before Ray starts
    if bpe.proxy == "standalone":
        task = StandaloneTask(bpe.target_space, ref, runs, bpe.seed, use_gpu, bpe.rank_by)
    else:
        task = ProxyTask(bpe, ref, runs, use_gpu, keep_runs, sampling, depth_rule)
    ensure_ray(address)
    check_resources(1, cpus_per_trial, 1.0 if use_gpu else 0.0)
    splits = _load_splits(bpe, data)
    if isinstance(task, StandaloneTask):
        Path(runs).mkdir(parents=True, exist_ok=True)
        evaluate: Evaluate = StandaloneEvaluation(task, splits)
    else:
        evaluate = SupernetEvaluation(task, splits)
    loop = _Loop(bpe, mip, task, evaluate, out, cpus_per_trial, use_gpu, verbose, started)
    return loop.run()


def search_reference(bpe: BPESpace, reference: Reference) -> Reference:
    """The rows of ``reference`` that trials rank: the file's listed keys, or a seeded sample of
    ``reference_archs`` rows when the table holds more (a large table, such as NAS-Bench-201's)."""
    if isinstance(bpe.reference_archs, tuple):
        return reference.select(bpe.reference_archs)
    if isinstance(bpe.reference_archs, int) and len(reference) > bpe.reference_archs:
        rows = sorted(random.Random(f"bpe-reference:{bpe.seed}").sample(range(len(reference)), bpe.reference_archs))
        return reference.select([reference.keys[i] for i in rows])
    return reference


def _load_splits(bpe: BPESpace, data: str | DataSplits | None) -> DataSplits:
    """The file's (or the given) data, with a calibration split that holds every calib_images choice."""
    calib = None if bpe.estimator == "bn_score" or bpe.proxy == "standalone" else max(bpe.choices["calib_images"])
    splits = data if isinstance(data, DataSplits) else load_data(data or bpe.data, seed=bpe.seed, calib_images=calib)
    if calib is not None and len(splits.calib) < calib:
        raise ConfigError(f"hyperparameters.calib_images goes up to {calib}, but the calibration split of "
                          f"{splits.name} holds {len(splits.calib)} images; load the data with calib_images >= {calib}")
    return splits


@dataclass
class _Loop:
    bpe: BPESpace
    mip: MIPConfig
    task: ProxyTask | StandaloneTask
    evaluate: Evaluate
    out: Path
    cpus_per_trial: float
    use_gpu: bool
    verbose: bool
    started: float
    records: list[dict[str, Any]] = field(default_factory=list)
    summaries: list[RoundSummary] = field(default_factory=list)

    def run(self) -> BPEResult:
        free, fixed = list(self.bpe.free), dict(self.bpe.fixed)
        round_index = 0
        while True:
            reason = self._budget_spent(round_index)
            if reason:
                break
            round_started = time.monotonic()
            with _quiet():
                rows = self._run_round(round_index, free, fixed)
            self.records += rows
            write_round(self.out / TRIALS_DIR, round_index, rows)
            decision = None
            reason = "at most one free hyper-parameter left" if len(free) <= 1 else self._budget_spent(round_index + 1)
            if not reason:
                decision = prune_decision(self.records, free, self.bpe.choices, self.mip.cost_weight, self.bpe.seed,
                                          self.mip.fix_at, self.mip.column)
            self._summarise(round_index, rows, free, fixed, decision, time.monotonic() - round_started)
            if reason:
                break
            assert decision is not None  # decided just above, as there was no reason to stop
            free.remove(decision.param)
            fixed[decision.param] = decision.value
            round_index += 1
        return self._finish(fixed, reason)

    def _budget_spent(self, round_index: int) -> str | None:
        if round_index >= self.mip.rounds:
            return f"max rounds ({self.mip.rounds}) reached"
        if self.mip.max_trials is not None and len(self.records) >= self.mip.max_trials:
            return f"max trials ({self.mip.max_trials}) reached"
        if self.mip.max_seconds is not None and time.monotonic() - self.started >= self.mip.max_seconds:
            return f"max seconds ({self.mip.max_seconds:g}) reached"
        return None

    def _run_round(self, round_index: int, free: list[str], fixed: Setting) -> list[dict[str, Any]]:
        k = self.mip.trials_per_round if free else 1
        if self.mip.max_trials is not None:
            k = min(k, self.mip.max_trials - len(self.records))
        resources = {"CPU": self.cpus_per_trial, **({"GPU": 1} if self.use_gpu else {})}
        trainable = tune.with_resources(
            tune.with_parameters(BPETrial, evaluate=self.evaluate, metric=self.mip.column), resources)
        searcher = round_searcher(self.bpe, self.mip, round_index, free, fixed, self.records)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=k, max_concurrent_trials=k, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str((self.out / "tune").resolve()), name=f"round-{round_index:03d}",
                                      verbose=0, checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
        )
        grid = tuner.fit()
        first = len(self.records)
        rows = [_row(grid[i], round_index, first + i, self.bpe, fixed) for i in range(len(grid))]
        if all(r["status"] == ERROR for r in rows):
            raise TrainingError(f"every BPE trial of round {round_index} failed; first error: {rows[0]['error']}")
        return rows

    def _summarise(self, round_index: int, rows: list[dict[str, Any]], free: list[str], fixed: Setting,
                   decision: PruneDecision | None, seconds: float) -> None:
        scores = [r[self.mip.column] for r in rows if r["status"] == OK]
        summary = RoundSummary(round_index, len(rows), tuple(free), dict(fixed),
                               max(scores) if scores else float("nan"), seconds, decision)
        self.summaries.append(summary)
        if self.verbose:
            fixed_now = f"; fixes {decision.param}={decision.value}" if decision else ""
            logger.info(f"bpe round {round_index + 1}/{self.mip.rounds}: {len(rows)} trials over {list(free)}, "
                        f"best {self.mip.metric} {summary.best_score:.3f}, {format_seconds(seconds)}{fixed_now}"
                        f"{self._eta(round_index)}")

    def _eta(self, round_index: int) -> str:
        """``; ETA ...`` of the rounds left at the pace so far (a budget or one free value may stop it sooner)."""
        left = self.mip.rounds - round_index - 1
        if left <= 0:
            return ""
        pace = (time.monotonic() - self.started) / (round_index + 1)
        return f"; at most {left} more round(s), ETA {format_seconds(left * pace)}"

    def _finish(self, fixed: Setting, reason: str) -> BPEResult:
        objectives = trial_objectives(self.records, self.mip.cost_weight, self.mip.column)
        ok = [i for i, r in enumerate(self.records) if r["status"] == OK]
        if not ok:
            first = next((r["error"] for r in self.records if r["error"]), "scores were constant in every trial")
            raise TrainingError(f"no BPE trial produced a rank correlation ({len(self.records)} trials); first problem: {first}")
        agree = [i for i in ok if all(self.records[i][p] == v for p, v in fixed.items())] or ok
        best = max(agree, key=lambda i: (objectives[i], -i))
        chosen = self.records[best]
        result = BPEResult(
            setting={p: chosen[p] for p in self.bpe.names}, tau=chosen["tau"], rho=chosen["rho"],
            cost_seconds=chosen["cost_seconds"], device=chosen["device"], trial=chosen["trial"],
            rounds=tuple(self.summaries), stop_reason=reason, seconds=time.monotonic() - self.started,
            out_dir=self.out, trials_dir=self.out / TRIALS_DIR, result_path=self.out / RESULT_FILE,
            sampling=getattr(self.task, "sampling", None), depth_rule=getattr(self.task, "depth_rule", None),
            records=tuple(self.records),
        )
        payload = {**result.to_dict(), "bpe": self.bpe.name, "target_space": self.bpe.target_space.name,
                   "reference": {"source": self.task.reference.source, "archs": len(self.task.reference)},
                   "cost_weight": self.mip.cost_weight, "metric": self.mip.metric, "proxy": self.bpe.proxy,
                   "estimator": chosen["estimator"],
                   "seed": self.bpe.seed,
                   "seconds_per_arch": chosen.get("seconds_per_arch"), "trials": len(self.records)}
        _write_json(result.result_path, payload)
        if self.verbose:
            logger.info(f"bpe chosen ({reason}): {setting_key(result.setting, self.bpe.names)}")
        return result


def round_searcher(bpe: BPESpace, mip: MIPConfig, round_index: int, free: Sequence[str], fixed: Setting,
                   records: Sequence[Record]) -> OptunaSearch:
    """A round's ``OptunaSearch``: the free hyper-parameters (define-by-run), the fixed ones as
    constants, and a study warm-started with every earlier trial that agrees with ``fixed``.

    One objective (tau, max) when ``cost_weight`` is 0, else two (tau max, cost_seconds min).
    """
    two = mip.cost_weight > 0
    metric, mode = ([METRIC, "cost_seconds"], ["max", "min"]) if two else (METRIC, "max")
    name = f"bpe-round-{round_index}"
    storage = optuna.storages.InMemoryStorage()
    with _optuna_quiet():
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=["maximize", "minimize"] if two else ["maximize"])
    distributions: dict[str, BaseDistribution] = {p: CategoricalDistribution(list(bpe.choices[p])) for p in free}
    agree = [r for r in records if r["status"] != ERROR and all(r[p] == v for p, v in fixed.items())]
    study.add_trials([
        optuna.trial.create_trial(params={p: r[p] for p in free}, distributions=distributions,
                                  values=[_finite_or_zero(r[mip.column]), r["cost_seconds"]] if two
                                  else [_finite_or_zero(r[mip.column])])
        for r in agree
    ])
    sampler = make_sampler(mip.sampler, bpe.seed + round_index)
    space = DefineByRun({p: tuple(bpe.choices[p]) for p in free}, dict(fixed))
    return OptunaSearch(space=space, metric=metric, mode=mode, sampler=sampler, storage=storage, study_name=name)


@dataclass(frozen=True)
class DefineByRun:
    """Optuna's define-by-run space of a round: the free hyper-parameters, plus the fixed ones as
    constants. A plain class, not a closure, so Tune can pickle the searcher's state."""

    free: dict[str, tuple[Any, ...]]
    fixed: Setting

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        for name, values in self.free.items():
            trial.suggest_categorical(name, list(values))
        return dict(self.fixed)


def _row(result: Any, round_index: int, trial: int, bpe: BPESpace, fixed: Setting) -> dict[str, Any]:
    """One trial row from a Tune result; a trial that crashed keeps its config and error."""
    metrics, config = dict(result.metrics or {}), dict(result.config or {})
    row = {name: config.get(name, fixed.get(name)) for name in bpe.names}
    if "tau" in metrics:
        row.update({k: metrics.get(k) for k in TRIAL_SCHEMA.names if k in metrics and k not in bpe.names})
        row["error"] = metrics.get("error") or None
    else:
        message = str(result.error).strip().splitlines()[-1] if result.error else "the trial reported no result"
        row.update(estimator=bpe.estimator_for(row.get("mode")), seed=bpe.seed, tau=float("nan"), rho=float("nan"),
                   cost_seconds=0.0, status=ERROR, error=message)
    row.update(round=round_index, trial=trial, trial_id=str(metrics.get("trial_id") or Path(str(result.path)).name))
    return row


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep Tune's experiment tables and Optuna's study INFO lines off the console for a round.

    Tune's default console reporter prints its table at any ``verbose``; ``RAY_AIR_NEW_OUTPUT=0``
    selects the reporter that honours ``verbose=0``. Everything is restored on exit.
    """
    loggers = [logging.getLogger(name) for name in ("ray.tune", "ray.train", "ray.air")]
    levels = [lg.level for lg in loggers]
    saved_env = os.environ.get(NEW_OUTPUT_ENV)
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    os.environ[NEW_OUTPUT_ENV] = "0"
    try:
        with _optuna_quiet():
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if saved_env is None:
            os.environ.pop(NEW_OUTPUT_ENV, None)
        else:
            os.environ[NEW_OUTPUT_ENV] = saved_env


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna at WARNING (no "A new study created" lines) for the block, then as it was."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)
