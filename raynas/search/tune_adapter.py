"""``tune_search``: the search of ``raynas.search.study`` run as a Ray Tune experiment.

Which to pick:

- ``search`` (Optuna ask/tell over the actor pool) for cheap evaluations. A BN score is a table
  lookup of about 1 ms, and ask/tell adds about 1 ms per evaluation, while Ray Tune costs about
  75 ms per trial even with ``reuse_actors=True``: as Tune trials, BN-score evaluations would
  spend nearly all their time in Tune.
- ``tune_search`` when each evaluation is expensive (BN calibration plus accuracy, retraining a
  child), so the per-trial overhead is small beside it, or when you want Tune's schedulers,
  experiment tracking, loggers and fault tolerance.

``OptunaSearch`` hands out one configuration per Tune trial, so a Tune trial here is one
architecture, and what ``search`` calls a batch is the set of concurrent trials
(``max_concurrent``). Every trial evaluates on the shared ``EvaluatorPool`` actors, whose
handles reach the trainable through ``tune.with_parameters``: no trial builds a supernet. An
``estimate`` search scores its fusion's reference once, before the first trial, and each child's
estimators give its ``estimate`` through the same ``EstimateObjective`` as in ``search``.

What does not depend on the engine is ``raynas.search.runner.SearchRunner``'s, shared with
``search``. Cheap objectives act first: the define-by-run function has the runner compute
FLOPs, params (and latency) in the driver and set the Optuna constraints before the trial
starts. An infeasible trial is never scored, yet still reports every objective
(``OptunaSearch`` leaves a trial RUNNING when one is missing or NaN): the unscored objective
reports ``PENALTY``, and its row is stored as ``infeasible`` without it. A trial whose
evaluation fails raises, so Tune marks it ERROR, Optuna records FAIL and its row is stored as
``failed``. Rows are the ones ``search`` writes, in ``out_dir/results``, flushed every
``config.batch_size`` finished trials.

No architecture is evaluated twice, as in ``search``: every feasible trial asks one small actor
(``EvaluateOnce``, no CPU) for its architecture's result; the first trial with a key submits
the evaluation to a pool actor, and every later (or concurrent) trial with the same key waits
for that same result, reports it, and is stored as ``duplicate``. A failed evaluation is
forgotten, so a later trial with that key evaluates it again. Each trial carries the user
attribute ``arch`` and the study the objective names. The Optuna study
lives in memory (a journal file costs milliseconds per suggested parameter, and Tune saves the
searcher's state in ``out_dir/tune``), so a Tune search does not resume: run it again with a new
``run_id`` or ``out_dir``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from raynas.checkpoint import LoadedCheckpoint
from raynas.errors import ConfigError
from raynas.results import ResultStore, result_schema
from raynas.results.report import RESULTS_DIR
from raynas.search.define import suggest_arch
from raynas.search.objectives import OBJECTIVES
from raynas.search.pool import EvaluatorPool
from raynas.search.runner import Decided, Row, SearchRunner, duplicate_result, penalties
from raynas.search.scoring import EstimateObjective
from raynas.search.study import SearchConfig, search_estimate

PER_TRIAL = ("architecture",)
INFO = "raynas"
"""Config key of what the driver decided for a trial: Optuna number, arch key, cheap values."""
TUNE_DIR = "tune"


class EvaluationFailed(RuntimeError):
    """An evaluator returned a failed row; raised so that Tune marks the trial ERROR."""


@dataclass
class TuneSearchResult:
    out_dir: Path
    study: optuna.Study
    store: ResultStore
    results: tune.ResultGrid


class DefineArch:
    """The define-by-run space: suggest an architecture, then the runner decides the trial."""

    def __init__(self, runner: SearchRunner) -> None:
        self.runner = runner

    def __call__(self, trial: Any) -> dict[str, Any]:
        decided = self.runner.decide([trial], [suggest_arch(trial, self.runner.space)])[0]
        return {INFO: decided.to_dict()}


@ray.remote(num_cpus=0, max_restarts=3, max_task_retries=3)
class EvaluateOnce:
    """One evaluation per architecture key for all the Tune trials of a search (an async actor).

    The first caller with a key submits the evaluation to a pool actor; every caller awaits that
    same result and learns whether it was the first. A failed evaluation is forgotten, so a later
    caller with that key evaluates it again. A restarted actor has forgotten everything: at worst
    an architecture is then evaluated a second time.
    """

    def __init__(self, actors: list[Any], method: str | None, estimation: EstimateObjective | None = None) -> None:
        self.actors, self.method, self.estimation = actors, method, estimation
        self.results: dict[str, asyncio.Future[Row]] = {}

    async def evaluate(self, key: str, trial: int) -> tuple[Row, bool]:
        first = key not in self.results
        if first:
            self.results[key] = asyncio.ensure_future(self._run(key, trial))
        pending = self.results[key]
        try:
            row = await pending
        except Exception:
            self._forget(key, pending)
            raise
        if row["status"] == "failed":
            self._forget(key, pending)
        return row, first

    async def _run(self, key: str, trial: int) -> Row:
        if self.method is None:
            return {"status": "ok"}
        actor = self.actors[trial % len(self.actors)]
        if self.estimation is None:
            return (await getattr(actor, self.method).remote([key]))[0]
        return self.estimation.rows(await getattr(actor, self.method).remote([key], list(self.estimation.names)))[0]

    def _forget(self, key: str, pending: asyncio.Future[Row]) -> None:
        if self.results.get(key) is pending:
            del self.results[key]


EVALUATOR_METHODS = {"bn_score": "score", "calibrate": "calibrate_and_evaluate", "estimate": "estimate", "cost": None}
"""Pool actor method of each evaluator (``cost`` calls none; ``estimate``'s rows go through ``EstimateObjective``)."""


def evaluate_trial(config: dict[str, Any], once: Any, objectives: Sequence[str]) -> None:
    """The Tune trainable: one architecture, evaluated once per key, every objective reported."""
    decided = Decided(**config[INFO])
    if not decided.feasible:
        result: Row = {"status": "infeasible"}
    else:
        row, first = ray.get(once.evaluate.remote(decided.arch, decided.trial))
        if row["status"] == "failed":
            raise EvaluationFailed(row.get("error") or "the evaluator returned a failed row")
        result = {k: v for k, v in row.items() if k not in ("arch", "evaluator")}
        if not first:
            result = duplicate_result(result)
    tune.report({**decided.cheap, **penalties(objectives, result), **result})


class RowWriter(tune.Callback):
    """Driver-side: one ``search``-style row per finished trial, written in closed batches."""

    def __init__(self, store: ResultStore, runner: SearchRunner) -> None:
        self.store, self.runner = store, runner
        self.columns = set(result_schema(store.space).names)
        self.rows: list[Row] = []

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._add(trial, {k: v for k, v in trial.last_result.items() if k in self.columns})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        path = Path(trial.error_file) if trial.error_file else None  # the driver's copy, synced later
        error = path.read_text().strip() if path and path.is_file() else "the trial errored; see Tune's logs"
        self._add(trial, {"status": "failed", "error": error[-2000:]})

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush()

    def _add(self, trial: Any, result: Row) -> None:
        self.rows.append(self.runner.row(Decided(**trial.config[INFO]), result))
        if len(self.rows) >= self.runner.config.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.store.write_batch(self.rows)
            self.rows = []


def tune_search(
    checkpoint: LoadedCheckpoint,
    pool: EvaluatorPool,
    out_dir: str | os.PathLike[str],
    config: SearchConfig = SearchConfig(),
    per_trial: str = "architecture",
    max_concurrent: int | None = None,
    trial_cpus: float = 0.01,
    latency_table: Any = None,
    progress: bool = False,
) -> TuneSearchResult:
    """Run ``config.trials`` Tune trials, one architecture each, on ``pool``'s actors.

    ``max_concurrent`` trials run at once (default: two per actor, so each actor has the next
    architecture queued). ``trial_cpus`` is what each trial reserves: a trial only waits on an
    actor, so it should be tiny; Tune refuses 0, and the pool's actors must leave this much free.
    """
    if per_trial not in PER_TRIAL:
        raise ConfigError(f"per_trial must be one of {list(PER_TRIAL)} (OptunaSearch hands out one "
                          f"configuration per trial), got {per_trial!r}")
    if config.evaluator not in EVALUATOR_METHODS:
        raise ConfigError(f"the Tune adapter evaluates on the actor pool ({sorted(EVALUATOR_METHODS)}); the "
                          f"{config.evaluator} evaluator runs with the ask/tell search (raynas.search.search)")
    if config.prescreen:
        raise ConfigError(f"the Tune adapter has no prescreen (got prescreen={config.prescreen}); "
                          "run the ask/tell search (raynas.search.search, `raynas search --prescreen N`)")
    runner = SearchRunner(checkpoint, config, pool.config, latency_table)
    concurrent = max_concurrent or 2 * len(pool.actors)
    _check_trial_resources(trial_cpus, concurrent)
    out = _fresh_dir(Path(out_dir).resolve(), config.run_id)
    storage = optuna.storages.InMemoryStorage()  # Tune keeps the searcher's state; a journal costs ms per parameter
    store = ResultStore(out / RESULTS_DIR, runner.space)
    runner.write_run_file(out, engine="ray.tune")
    searcher = OptunaSearch(
        space=DefineArch(runner), metric=list(config.objectives),
        mode=[OBJECTIVES[o].direction for o in config.objectives],
        sampler=runner.sampler(),
        study_name=config.run_id, storage=storage,
    )
    runner.name_objectives(optuna.load_study(study_name=config.run_id, storage=storage))
    estimation = search_estimate(config, checkpoint, pool, out) if config.evaluator == "estimate" else None
    once = EvaluateOnce.remote(list(pool.actors), EVALUATOR_METHODS[config.evaluator], estimation)
    trainable = tune.with_resources(
        tune.with_parameters(evaluate_trial, once=once, objectives=list(config.objectives)),
        {"cpu": trial_cpus},
    )
    writer = RowWriter(store, runner)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=config.trials,
                                    max_concurrent_trials=concurrent, reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(name=config.run_id, storage_path=str(out / TUNE_DIR), callbacks=[writer],
                                  verbose=1 if progress else 0),
    )
    try:
        grid = tuner.fit()
    finally:
        ray.kill(once)
    writer.flush()
    study = optuna.load_study(study_name=config.run_id, storage=storage)
    return TuneSearchResult(out, study, store, grid)


def trial_name(trial: Any) -> str:
    """Name Tune's trials (and their folders) by Optuna trial number, as the result rows are."""
    return f"trial_{trial.config[INFO]['trial']:05d}"


def _check_trial_resources(trial_cpus: float, concurrent: int) -> None:
    """Fail fast where Tune would wait forever for CPUs the evaluator actors hold."""
    if trial_cpus <= 0:
        raise ConfigError(f"trial_cpus must be > 0 (Tune cannot schedule a trial that needs nothing), got {trial_cpus}")
    free = ray.available_resources().get("CPU", 0.0)
    if free < trial_cpus:
        raise ConfigError(f"each Tune trial needs {trial_cpus:g} CPU, but only {free:g} is free beside the "
                          f"evaluator actors; give the pool fewer CPUs (PoolConfig.num_cpus) or lower trial_cpus")
    if concurrent < 1:
        raise ConfigError(f"max_concurrent must be >= 1, got {concurrent}")


def _fresh_dir(out: Path, run_id: str) -> Path:
    """``out``, refusing a run directory where this run_id already ran (a Tune search does not resume)."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / TUNE_DIR / run_id).exists():
        raise ConfigError(f"{out} already holds Tune run {run_id!r}; a Tune search does not resume: "
                          f"use a new run_id or out_dir")
    return out
