"""``search``: a multi-objective Optuna study driven by ask/tell over the evaluator pool.

Each batch: ask trials (define-by-run over the space), compute cheap objectives, apply
constraints (``trial.set_constraint``) before any scoring, score the feasible children on the
actor pool, write one closed Parquet file, tell Optuna, then append the batch's finished trials
to the study's journal file (which optuna-dashboard reads). A search killed at any point resumes
from the journal and the Parquet rows, and every trial ends with exactly one row per evaluator.

**Nothing lost, nothing stale.** One search writes a folder at a time (``FolderLock``); a
resume must have the identity the search started with (checkpoint, space, evaluator, sampler,
seeds, objectives, constraints, depth rule: ``run_identity``), and takes only its own rows; a
journal record torn by a crash is cut off before Optuna reads it (``journal_repair``) and its
trials come back from Parquet.

**No architecture is evaluated twice.** Samplers propose repeats (NSGA-II: 358 in 1,000 trials
on ``tiny``). A feasible trial whose architecture key was already evaluated in this run (an
``ok`` row, recovered rows included, or an earlier trial of the same batch) calls no evaluator:
Optuna is told the original's values and constraints, and its row has status ``duplicate`` with
the original's measured columns (``COPIED``), so reports, which keep ``ok`` rows, count each
architecture once. Infeasible repeats stay ``infeasible`` (they cost nothing); an architecture
whose evaluation failed is evaluated again when proposed in a later batch.

**A prescreen first** (``prescreen=N``, ``--prescreen N``). Before the first batch, N seeded
children are scored in bulk on their table-lookup objectives (``raynas.search.prescreen``); the
exact front of the feasible ones (and the next fronts, up to ``prescreen_keep``) is written to
``prescreen-<run_id>.parquet`` and enqueued, so it makes the first trials, each with its row. A
resume reads that file back and enqueues only the kept children that are no trial yet.

**Training-free estimators** (objective ``estimate``, ``estimator="fuse:naswot+flops"``). The actors
compute each batch's base estimators on children sliced from the supernet (trained, or at its
seeded initialisation: ``UntrainedSupernet``) and a fixed probe minibatch; a fusion places each
child in a reference population of ``estimator_reference`` seeded children, scored once at the
start into ``reference-<run_id>/`` (read back on resume; ``raynas.search.scoring.EstimateObjective``).

**What optuna-dashboard shows.** The study carries the objective names (``SearchRunner.name_objectives``),
every trial the user attribute ``arch`` (its canonical key), and ``record_stage`` adds the
results of later stages (short training, final training) as study user attributes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, Self, cast

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from raynas.data import DataSplits
from raynas.errors import ConfigError
from raynas.estimate.training_free import DEFAULT_PROBE_IMAGES, ProbeBatch
from raynas.estimate.training_free.fusion import Expression, parse_expressions
from raynas.logs import Progress, get_logger
from raynas.results import ResultStore
from raynas.results.folder_lock import FolderLock
from raynas.results.fronts import pareto_layers
from raynas.results.pareto import as_losses
from raynas.results.report import RESULTS_DIR, read_run_metadata
from raynas.search.arch_pool import pool_digest
from raynas.search.define import suggest_arch
from raynas.search.journal_repair import repair_journal
from raynas.search.objectives import OBJECTIVES, Constraint, parse_objectives
from raynas.search.pool import EvaluatorPool, PoolConfig
from raynas.search.prescreen import (
    Prescreened,
    check_prescreen,
    prescreen,
    prescreen_path,
    read_prescreened,
    write_prescreened,
)
from raynas.search.run_identity import RunIdentity, check_resume, recorded_identity, space_hash
from raynas.search.runner import (
    ARCH_ATTR,
    Decided,
    Row,
    SearchRunner,
    Subject,
    configured_depth_rule,
    duplicate_result,
    measured,
    plain_value,
    records,
)
from raynas.search.samplers import check_sampler, sampler_name
from raynas.search.scoring import FUSIONS, EstimateObjective, PartStore, estimate_objective, identity_of, probe_digest
from raynas.space import Arch

logger = get_logger(__name__)
JOURNAL_FILE = "study.journal"
POPULATION_SAMPLERS = ("nsga2", "nsga3")
"""Named samplers that use ``SearchConfig.population``."""
ACCURACY_EVALUATORS = ("calibrate", "proxy")


class AccuracyScorer(Protocol):
    """An evaluator of the accuracy objective other than the actor pool (``accuracy_evaluator``
    ``proxy``: ``raynas.bpe.search_evaluator.ProxyEvaluator``); one row per child, in order."""

    @property
    def config(self) -> PoolConfig: ...
    def evaluate(self, archs: list[Arch]) -> list[Row]: ...


Scorer = EvaluatorPool | AccuracyScorer


@dataclass
class SearchConfig:
    """What to search for and how. ``sampler`` is a name or any optuna sampler object."""

    objectives: tuple[str, ...] = ("bn_score", "flops")
    constraints: tuple[str, ...] = ()
    sampler: Any = "nsga2"
    trials: int = 500
    batch_size: int = 100
    population: int = 50
    seed: int = 0
    top_k: int = 10
    run_id: str = "search"
    prescreen: int = 0
    """Children sampled and scored in bulk before the first trial; their front is enqueued (0: none)."""
    prescreen_keep: int = 0
    """Keep the prescreen's next fronts too, until this many children (0: the front alone)."""
    accuracy_evaluator: str = "calibrate"
    """What measures the ``accuracy`` objective: a BN-calibrated child of the supernet (``calibrate``)
    or the child trained on its own under a BPE proxy setting (``proxy``, ``raynas.bpe.search_evaluator``)."""
    estimator: str | None = None
    """The ``estimate`` objective's estimator expression: ``naswot``, ``fuse:naswot*2+flops``,
    ``vote:synflow+jacov+snip``, ``ranker:FILE`` (``raynas.estimate.training_free.fusion``)."""
    estimator_reference: int = 64
    """Children in a fusion's reference population (a seeded sample of the space, scored once)."""
    pool: tuple[str, ...] = ()
    """Architecture keys the search may evaluate (``raynas.search.arch_pool``); empty: the whole space."""

    def __post_init__(self) -> None:
        self.objectives = parse_objectives(self.objectives)
        self.parsed_constraints = tuple(Constraint.parse(c) for c in self.constraints)
        check_sampler(self.sampler)
        if self.trials < 1 or self.batch_size < 1:
            raise ConfigError(f"trials and batch_size must be >= 1, got {self.trials}, {self.batch_size}")
        check_prescreen(self.prescreen, self.prescreen_keep, self.objectives)
        if self.pool and self.prescreen:
            raise ConfigError("a prescreen samples the whole space: leave it out of a search over a pool of architectures")
        self.pool = tuple(self.pool)
        if self.accuracy_evaluator not in ACCURACY_EVALUATORS:
            raise ConfigError(f"accuracy_evaluator must be one of {list(ACCURACY_EVALUATORS)}, "
                              f"got {self.accuracy_evaluator!r}")
        if self.accuracy_evaluator != "calibrate" and "accuracy" not in self.objectives:
            raise ConfigError(f"the {self.accuracy_evaluator} evaluator measures the accuracy objective: "
                              f"objectives {list(self.objectives)} have none (use e.g. accuracy,flops)")
        self._check_estimator()

    def _check_estimator(self) -> None:
        if "estimate" not in self.objectives:
            if self.estimator is not None:
                raise ConfigError(f"estimator {self.estimator!r} scores the estimate objective: objectives "
                                  f"{list(self.objectives)} have none (use e.g. estimate,flops)")
            return
        if self.estimator is None:
            raise ConfigError("the estimate objective needs an estimator expression such as naswot or "
                              "fuse:naswot+flops (`raynas search --evaluator EXPR`, `raynas run --estimator EXPR`)")
        if len(parse_expressions(self.estimator)) != 1:
            raise ConfigError(f"the estimate objective takes one estimator expression, got {self.estimator!r}")
        if self.estimator_reference < 2:
            raise ConfigError(f"estimator_reference must be >= 2 (a fusion ranks each child within it), "
                              f"got {self.estimator_reference}")

    @property
    def evaluator(self) -> str:
        """Which evaluator scores a trial: calibration or a proxy, an estimator, the BN indicator, or costs alone."""
        if "accuracy" in self.objectives:
            return self.accuracy_evaluator
        if "estimate" in self.objectives:
            return "estimate"
        return "bn_score" if "bn_score" in self.objectives else "cost"

    @property
    def expression(self) -> Expression | None:
        """The parsed ``estimator`` of an ``estimate`` search, else None."""
        return parse_expressions(self.estimator)[0] if self.estimator is not None else None

    def describe(self) -> dict[str, Any]:
        """The settings as plain values (no deep copy: a sampler object holds locks that cannot be copied)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("parsed_constraints", "pool")}
        pool = {"pool": pool_digest(self.pool)} if self.pool else {}
        return {**values, "sampler": sampler_name(self.sampler), "objectives": list(self.objectives),
                "constraints": list(self.constraints), **pool}


@dataclass
class SearchResult:
    out_dir: Path
    study: optuna.Study
    store: ResultStore
    calibrated: list[Row] = field(default_factory=list)


class Search:
    """One search run in ``out_dir`` over a trained checkpoint (resumable).

    It holds ``out_dir``'s lock from construction until ``run`` returns or raises (or ``close``):
    a second search on the folder meanwhile is refused, as is resuming the folder's search
    ``config.run_id`` under another identity (``raynas.search.run_identity``).
    """

    def __init__(self, checkpoint: Subject, pool: Scorer, out_dir: str | os.PathLike[str],
                 config: SearchConfig, latency_table: Any = None) -> None:
        self.runner = SearchRunner(checkpoint, config, pool.config, latency_table)
        self.checkpoint, self.pool, self.config = checkpoint, pool, config
        self.space = checkpoint.space
        self.out_dir = Path(out_dir)
        self.store = ResultStore(self.out_dir / RESULTS_DIR, self.space)
        self.evaluated: dict[str, Row] = {}
        """Architecture key -> the measured columns of its ``ok`` row (what a duplicate copies)."""
        self._lock = FolderLock(self.out_dir).acquire()
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise

    def _open(self) -> None:
        """Under the folder's lock: check the identity, repair a torn journal, open the study, record run.json."""
        probe = self.actors.probe if self.config.evaluator == "estimate" else None
        self.identity = check_folder(self.out_dir, self.checkpoint, self.config, self.pool.config, probe)
        repair_journal(self.out_dir / JOURNAL_FILE)
        runner, run_id = self.runner, self.config.run_id
        # Ask/tell runs on an in-memory study; each finished batch is then appended to the journal
        # in one go. Writing the journal per suggested parameter costs a file sync each, about
        # 140 ms per trial on a 49-dimension space, far more than a BN score.
        self.study = optuna.create_study(study_name=run_id, directions=runner.directions, sampler=runner.sampler())
        self.journal = optuna.create_study(
            study_name=run_id, storage=JournalStorage(JournalFileBackend(str(self.out_dir / JOURNAL_FILE))),
            directions=runner.directions, load_if_exists=True,
        )
        for study in (self.study, self.journal):
            runner.name_objectives(study)
        runner.write_run_file(self.out_dir, runs={run_id: self.identity.to_dict()})

    @property
    def actors(self) -> EvaluatorPool:
        """The actor pool (or a stand-in with its methods): BN scores and calibration run there."""
        return cast(EvaluatorPool, self.pool)

    @cached_property
    def estimation(self) -> EstimateObjective:
        """The ``estimate`` objective, on first use (a fusion's reference is scored then, or read back)."""
        return search_estimate(self.config, self.checkpoint, self.actors, self.out_dir)

    @property
    def accuracy_scorer(self) -> AccuracyScorer:
        """The scorer of ``accuracy_evaluator: proxy`` (``raynas.bpe.search_evaluator.ProxyEvaluator``)."""
        return cast(AccuracyScorer, self.pool)

    def close(self) -> None:
        """Let the folder go (``run`` does this itself); for a Search that is never run."""
        self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the ask/tell loop --------------------------------------------------------------
    def run(self, progress: bool = True) -> SearchResult:
        """Finish the search; the folder's lock is released when this returns or raises."""
        if not self._lock.held:
            raise ConfigError(f"this search of {self.out_dir} has ended and let its folder go: "
                              "make a new Search to resume it")
        try:
            self._recover()
            self._enqueue_prescreened(progress)
            shown = Progress(logger, "search", self.config.trials, "trials", every_seconds=0, done=self._finished())
            while (done := self._finished()) < self.config.trials:
                trials = [self.study.ask() for _ in range(min(self.config.batch_size, self.config.trials - done))]
                self._evaluate([(t, suggest_arch(t, self.space)) for t in trials])
                if progress:
                    shown.update(self._finished())
            calibrated = self._calibrate_top_k() if self.config.top_k and "bn_score" in self.config.objectives else []
        finally:
            self.close()
        return SearchResult(self.out_dir, self.study, self.store, calibrated)

    def _finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))

    def _recover(self) -> None:
        """Rebuild the study from the journal, then from Parquet rows the journal never got.

        A driver killed mid-batch loses only trials with no row: they are asked again under the
        same numbers, so every trial ends with exactly one row. Every ``ok`` row of this search
        (never another run id's or checkpoint's), from the journal's trials or not, marks its
        architecture as evaluated.
        """
        persisted = [t for t in self.journal.get_trials(deepcopy=False)
                     if t.state in (TrialState.COMPLETE, TrialState.FAIL)]
        self.study.add_trials(persisted)
        stored = self._own_rows(self.store.to_pandas())
        if len(stored):
            stored = stored[stored["evaluator"] == self.config.evaluator]
            for row in records(stored[stored["status"] == "ok"].sort_values("trial")):
                self.evaluated.setdefault(row["arch"], measured(row))
            missing = [self._frozen(row) for row in
                       records(stored[stored["trial"] >= len(persisted)].sort_values("trial"))]
            self.study.add_trials(missing)
            self.journal.add_trials(missing)

    # --- prescreen ----------------------------------------------------------------------
    def _enqueue_prescreened(self, progress: bool) -> None:
        """Enqueue the prescreen's kept children that are no trial yet, as many as trials are left.

        After ``_recover``, so enqueued trials take the numbers after the recovered ones. A resume
        enqueues what its first run did not reach.
        """
        if not self.config.prescreen:
            return
        kept = self._prescreened(progress)
        tried = {t.user_attrs.get(ARCH_ATTR) for t in self.study.get_trials(deepcopy=False)}
        todo = [key for key in kept.keys if key not in tried]
        room = max(0, self.config.trials - self._finished())  # the rest wait for a resume with more trials
        for key in todo[:room]:
            self.study.enqueue_trial(self.space.arch(key).to_dict())
        if progress:
            waiting = f"; {len(todo) - room} wait for more --trials" if len(todo) > room else ""
            logger.info(f"prescreen: {min(room, len(todo))} of {len(kept.keys)} kept children enqueued "
                        f"({len(kept.keys) - len(todo)} are trials already{waiting})")

    def _prescreened(self, progress: bool) -> Prescreened:
        """The prescreen's kept set: read back when this search made it already, else made and written."""
        path = prescreen_path(self.out_dir, self.config.run_id)
        settings = self._prescreen_settings()
        kept = read_prescreened(path, settings)
        if kept is not None:
            if progress:
                logger.info(f"prescreen read back from {path}: {len(kept.keys)} kept")
            return kept
        config = self.config
        score = self.actors.score_matrix if "bn_score" in config.objectives else None
        kept = prescreen(self.space, self.runner.cheap, score, config.prescreen, objectives=config.objectives,
                         constraints=config.parsed_constraints, seed=config.seed, keep=config.prescreen_keep)
        write_prescreened(path, kept, settings)
        if progress:
            logger.info(f"{kept.summary()}; written to {path}")
        return kept

    def _prescreen_settings(self) -> dict[str, Any]:
        """What decides a prescreen's kept set; a file made under other settings is made again."""
        config = self.config
        return {"run_id": config.run_id, "checkpoint_id": self.checkpoint.checkpoint_id,
                "samples": config.prescreen, "keep": config.prescreen_keep, "seed": config.seed,
                "objectives": list(config.objectives), "constraints": [str(c) for c in config.parsed_constraints],
                "depth_rule": self.runner.depth_rule if "bn_score" in config.objectives else None}

    def _own_rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of this search: a folder may hold other searches' (other run ids or checkpoints)."""
        return table[(table["run_id"] == self.config.run_id) & (table["checkpoint_id"] == self.checkpoint.checkpoint_id)]

    def _frozen(self, row: Row) -> optuna.trial.FrozenTrial:
        """The finished trial a stored row stands for (a ``duplicate`` row holds copied values)."""
        arch = self.space.arch(row["arch"])
        params = {name: arch[name] for name in arch}
        distributions: dict[str, BaseDistribution] = {
            d.name: CategoricalDistribution(list(d.choices)) for d in self.space.dims if d.name in arch}
        constraints = {f"constraints:{c}": c.violation(float(row[c.name])) for c in self.config.parsed_constraints}
        attrs = {ARCH_ATTR: row["arch"]}
        if row["status"] == "failed":
            return optuna.trial.create_trial(state=TrialState.FAIL, params=params, distributions=distributions,
                                             system_attrs=constraints, user_attrs=attrs)
        return optuna.trial.create_trial(params=params, distributions=distributions, system_attrs=constraints,
                                         user_attrs=attrs, values=self.runner.told_values(row))

    def _evaluate(self, batch: list[tuple[optuna.trial.Trial, Arch]]) -> None:
        """Decide, score the feasible architectures not evaluated yet, write one row per trial, tell Optuna."""
        decided = self.runner.decide([trial for trial, _ in batch], [arch for _, arch in batch])
        first: dict[str, int] = {}  # key -> the trial of this batch that evaluates it
        for i, d in enumerate(decided):
            if d.feasible and d.arch not in self.evaluated:
                first.setdefault(d.arch, i)
        scored = dict(zip(first, self._score([batch[i][1] for i in first.values()])))
        for key, result in scored.items():
            if result["status"] == "ok":
                self.evaluated[key] = measured(result)
        rows = [self.runner.row(d, self._result(d, i, first, scored, decided)) for i, d in enumerate(decided)]
        self.store.write_batch(rows)
        for (trial, _), row in zip(batch, rows):
            self._tell(trial, row)
        finished = self.study.get_trials(deepcopy=False)  # `study.trials` would deep-copy every trial
        self.journal.add_trials([finished[trial.number] for trial, _ in batch])

    def _result(self, d: Decided, i: int, first: dict[str, int], scored: dict[str, Row],
                decided: list[Decided]) -> Row:
        """Trial ``i``'s result: infeasible, its own evaluation, or a copy of its architecture's."""
        if not d.feasible:
            return {"status": "infeasible"}
        if first.get(d.arch) == i:
            return scored[d.arch]
        if d.arch in self.evaluated:
            return duplicate_result(self.evaluated[d.arch])
        original = decided[first[d.arch]].trial if d.arch in first else None
        return {"status": "failed", "error": f"same architecture as trial {original} of this batch, "
                                              f"whose evaluation failed"}

    def _score(self, archs: list[Arch]) -> list[Row]:
        if not archs:
            return []
        evaluator = self.config.evaluator
        if evaluator == "calibrate":
            rows = self.actors.calibrate_and_evaluate(archs)
        elif evaluator == "proxy":
            rows = self.accuracy_scorer.evaluate(archs)
        elif evaluator == "estimate":
            estimation = self.estimation
            rows = estimation.rows(self.actors.estimate(archs, estimation.names, self._per_actor(archs)))
        elif evaluator == "bn_score":
            rows = self.actors.score(archs, batch_size=self._per_actor(archs))
        else:
            return [{"status": "ok"} for _ in archs]
        return [{k: v for k, v in r.items() if k != "arch"} for r in rows]

    def _per_actor(self, archs: list[Arch]) -> int:
        """A batch size that gives each actor one call."""
        return max(1, -(-len(archs) // len(self.actors.actors)))

    def _tell(self, trial: optuna.trial.Trial, row: Row) -> None:
        if row["status"] == "failed":
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, self.runner.told_values(row))

    # --- coarse to fine -----------------------------------------------------------------
    def _calibrate_top_k(self) -> list[Row]:
        """BigNAS-style second stage: calibrate the top K of the BN-score stage by Pareto rank."""
        table = self._own_rows(self.store.to_pandas())
        scored = table[(table["evaluator"] == "bn_score") & (table["status"] == "ok")].drop_duplicates("arch")
        done = set(table.loc[table["evaluator"] == "calibrate", "trial"])
        ranks = pareto_ranks(scored[list(self.config.objectives)].to_numpy(float),
                             [OBJECTIVES[o].direction for o in self.config.objectives])
        order = np.lexsort((-scored["bn_score"].to_numpy(float), ranks))
        chosen = scored.iloc[order[: self.config.top_k]]
        todo = chosen[~chosen["trial"].isin(done)]
        if len(todo):
            archs = [self.space.arch(key) for key in todo["arch"]]
            started = time.time()
            results = self.actors.calibrate_and_evaluate(archs)
            rows = []
            for (_, source), result in zip(todo.iterrows(), results):
                rows.append({**{k: plain_value(source[k]) for k in ("run_id", "trial", "arch", "flops", "params",
                                                              "latency_ms", "bn_score", "checkpoint_id", "sampler", "seed")},
                             **{k: v for k, v in result.items() if k != "arch"}, "evaluator": "calibrate",
                             "started_at": started, "finished_at": time.time()})
            self.store.write_batch(rows)
        table = self._own_rows(self.store.to_pandas())
        calibrated = table[(table["evaluator"] == "calibrate") & table["trial"].isin(chosen["trial"])]
        return records(calibrated.sort_values("accuracy", ascending=False))


def check_folder(out_dir: str | os.PathLike[str], checkpoint: Subject, config: SearchConfig,
                 pool_config: PoolConfig, probe: ProbeBatch | None = None) -> RunIdentity:
    """This search's identity, or ``ConfigError`` if ``out_dir`` holds search ``config.run_id`` under another.

    ``Search`` checks under the folder's lock; a command may check first, to fail before it starts actors.
    """
    identity = search_identity(config, checkpoint, pool_config, probe)
    store = ResultStore(Path(out_dir) / RESULTS_DIR, checkpoint.space)
    check_resume(Path(out_dir), config.run_id, recorded_identity(read_run_metadata(out_dir), config.run_id, store), identity)
    return identity


def search_identity(config: SearchConfig, checkpoint: Subject, pool_config: PoolConfig,
                    probe: ProbeBatch | None = None) -> RunIdentity:
    """What decides a search's rows; a field the search does not use is None (never compared)."""
    sampler = sampler_name(config.sampler)
    calibration = pool_config.calibration if config.evaluator == "calibrate" else None
    expression = config.expression
    bn_scored = config.evaluator == "bn_score" or (expression is not None and "bn_score" in expression.members)
    return RunIdentity(
        checkpoint_id=checkpoint.checkpoint_id, space=checkpoint.space.name,
        space_hash=space_hash(checkpoint.space.definition), evaluator=config.evaluator, sampler=sampler,
        seed=config.seed, objectives=tuple(config.objectives),
        constraints=tuple(str(c) for c in config.parsed_constraints),
        population=config.population if sampler in POPULATION_SAMPLERS else None,
        depth_rule=configured_depth_rule(pool_config) if bn_scored else None,
        calib_images=calibration.images if calibration else None,
        calib_seed=calibration.seed if calibration else None,
        prescreen=config.prescreen or None,
        prescreen_keep=config.prescreen_keep if config.prescreen else None,
        estimator=config.estimator,
        estimator_reference=config.estimator_reference if expression and expression.kind in FUSIONS else None,
        probe=probe_digest(probe) if expression else None,
        pool="{archs}:{sha1}".format(**pool_digest(config.pool)) if config.pool else None,
    )


def search_probe(config: SearchConfig, data: DataSplits, images: int = DEFAULT_PROBE_IMAGES) -> ProbeBatch | None:
    """The probe minibatch of an ``estimate`` search: ``images`` training images drawn by the search
    seed (as ``raynas score --seed``); None for the other evaluators, which read no probe."""
    return ProbeBatch.from_splits(data, images, config.seed) if config.evaluator == "estimate" else None


def search_estimate(config: SearchConfig, subject: Subject, pool: EvaluatorPool,
                    out_dir: str | os.PathLike[str]) -> EstimateObjective:
    """The ``estimate`` objective of a search on ``pool`` (either engine); a fusion's reference is
    scored into ``OUT/reference-<run_id>/``, under the scoring's identity, once."""
    if config.estimator is None:
        raise ConfigError(f"search {config.run_id!r} has no estimate objective (objectives {list(config.objectives)})")
    store = PartStore(Path(out_dir) / f"reference-{config.run_id}",
                      identity_of(subject.checkpoint_id, pool.probe, config.seed, pool.config.indicator))
    return estimate_objective(config.estimator, subject.space, pool, store, config.estimator_reference, config.seed)


def pareto_ranks(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Non-dominated sorting: rank 0 is the Pareto front, rank 1 the front of the rest, ..."""
    return pareto_layers(as_losses(values, directions), keep=len(values))


def search(checkpoint: Subject, pool: Scorer, out_dir: str | os.PathLike[str],
           config: SearchConfig = SearchConfig(), latency_table: Any = None, progress: bool = True) -> SearchResult:
    """Run (or resume) a search; see ``Search``."""
    return Search(checkpoint, pool, out_dir, config, latency_table).run(progress)


# --- later stages, recorded in the study -------------------------------------------------------
STAGE_SEPARATOR = ":"


def record_stage(out_dir: str | os.PathLike[str], run_id: str, stage: str, rows: list[Row]) -> None:
    """Record the results of a later stage (short training, final training, ...) in the run's study.

    Each row is stored as one study user attribute named ``"{stage}:{arch}"`` whose value is
    the row without ``arch`` (JSON values), so optuna-dashboard's "Study User Attributes" table
    shows one line per architecture and stage; recording a row again replaces it. Read them
    back with ``read_stage``. Example::

        record_stage(run_dir, "search", "final", [{"arch": key, "val_accuracy": 0.91,
                                                    "test_accuracy": 0.90, "seconds": 412.0}])
    """
    if not isinstance(stage, str) or not stage or STAGE_SEPARATOR in stage:
        raise ConfigError(f"stage must be a non-empty string without {STAGE_SEPARATOR!r}, got {stage!r}")
    study = _load_journal_study(out_dir, run_id)
    attrs = {}
    for i, row in enumerate(rows):
        arch = row.get("arch") if isinstance(row, dict) else None
        if not isinstance(arch, str) or not arch:
            raise ConfigError(f"rows[{i}] of stage {stage!r} must be a dict with an `arch` key string, got {row!r}")
        value = {k: plain_value(v) for k, v in row.items() if k != "arch"}
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"rows[{i}] of stage {stage!r} must hold JSON values (no NaN): {err}") from err
        attrs[f"{stage}{STAGE_SEPARATOR}{arch}"] = value
    for name, value in attrs.items():
        study.set_user_attr(name, value)


def read_stage(out_dir: str | os.PathLike[str], run_id: str, stage: str) -> list[Row]:
    """The rows ``record_stage`` stored for ``stage``, each with its ``arch``, in recording order."""
    prefix = f"{stage}{STAGE_SEPARATOR}"
    attrs = _load_journal_study(out_dir, run_id).user_attrs
    return [{"arch": name[len(prefix):], **value} for name, value in attrs.items() if name.startswith(prefix)]


def _load_journal_study(out_dir: str | os.PathLike[str], run_id: str) -> optuna.Study:
    path = Path(out_dir) / JOURNAL_FILE
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: run the search in {out_dir} first")
    storage = JournalStorage(JournalFileBackend(str(path)))
    names = optuna.get_all_study_names(storage)
    if run_id not in names:
        raise ConfigError(f"{path} holds no study {run_id!r}; studies: {names}")
    return optuna.load_study(study_name=run_id, storage=storage)
