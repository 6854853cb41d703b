"""Multi-fidelity selection under a CPU-second budget: a label-free prescreen, then successive halving.

A global ranker places most cells well but not the very best (on the NB201 dev table the default
fusion's top-1 is a 93.3% cell, three of its top 10 are above 94%): the top of a ranking needs
real training. ``run_funnel`` spends a budget of CPU-seconds in three steps, each on Ray:

1. **prescreen**: score a seeded sample of the space (or of ``--pool``) with a label-free
   estimator expression on evaluator actors. It may spend ``prescreen_share`` of the budget:
   the first chunk measures the cost per cell, and the sample shrinks to what the share pays for.
2. **successive halving**: the best ``candidates`` cells train standalone under the first
   rung's proxy setting; the best ``1/eta`` of them go on to the next rung (more epochs), and so
   on. Every rung trains best-first, so when the budget runs out, the least promising are the
   ones left untrained (``raynas.bpe.budget``).
3. **choice**: the best cell of the highest rung reached.

The search never reads a true accuracy: only the validation split of the training images.

Every scored and trained cell is a row of ``OUT/funnel.parquet`` (``stage``, ``rung``, its score,
its CPU-seconds), written as each finishes. A rerun in the same folder reuses those rows, charges
their recorded CPU-seconds again and so reaches the same choice; ``OUT/chosen.json`` names it.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import ray

from raynas.atomic import write_atomic
from raynas.bpe.proxy import pack_proxy_data, proxy_child_space, proxy_scores, proxy_train_config
from raynas.bpe.proxy_setting import ProxySetting
from raynas.cost import CostModel
from raynas.data import DataSplits
from raynas.errors import ConfigError
from raynas.estimate.training_free import ProbeBatch
from raynas.estimate import IndicatorSettings
from raynas.estimate.training_free.fusion import Expression, parse_expression
from raynas.logs import get_logger
from raynas.model_record import DataInfo, ModelRecord
from raynas.bpe.budget import Budget, CostEstimate, ProxyJob, Row, train_within_budget
from raynas.search.pool import EvaluatorPool, PoolConfig, UntrainedSupernet
from raynas.search.scoring import PartStore, identity_of, score_architectures
from raynas.space import SearchSpace
from raynas.train.speed import check_rank_by

logger = get_logger(__name__)
FUNNEL_FILE = "funnel.parquet"
CHOSEN_FILE = "chosen.json"
RANDOM = "random"
"""The prescreen that scores nothing: cells in a seeded random order (random search's baseline)."""
PRESCREEN_CHUNK = 64
"""Cells scored first, to measure the prescreen's cost per cell."""


@dataclass(frozen=True)
class FunnelConfig:
    """How a budget is spent: the prescreen, the rungs, and how they rank."""

    budget_cpu_s: float
    estimator: str = RANDOM
    """Label-free expression that orders the prescreened cells (``fuse:...``), or ``random``."""
    prescreen: int = 1000
    """Most cells sampled and scored (all of a smaller pool)."""
    prescreen_share: float = 0.4
    """Most of the budget the prescreen may spend."""
    candidates: int = 81
    """Most cells that enter the first rung; each rung also stops at its share of the budget left
    (that budget over the rungs left), so the cheap rungs cannot starve the dear ones."""
    eta: int = 3
    """Each rung keeps the best 1/eta of the one before."""
    rung_epochs: tuple[int, ...] = (1, 3, 9)
    """Epochs of each rung's proxy training, lowest fidelity first; the rest of the setting is ``setting``."""
    setting: ProxySetting = field(default_factory=ProxySetting)
    rank_by: str = "accuracy"
    seed: int = 0
    probe_images: int = 64
    cpus_per_arch: float = 1.0
    use_gpu: bool = False

    def __post_init__(self) -> None:
        if not (self.budget_cpu_s > 0 and math.isfinite(self.budget_cpu_s)):
            raise ConfigError(f"--budget-cpu-s must be a positive number of CPU-seconds, got {self.budget_cpu_s}")
        if not 0 <= self.prescreen_share < 1:
            raise ConfigError(f"prescreen_share must be in [0, 1), got {self.prescreen_share}")
        if self.eta < 2:
            raise ConfigError(f"eta must be at least 2, got {self.eta}")
        if self.candidates < 1 or self.prescreen < 1:
            raise ConfigError("candidates and prescreen must be at least 1")
        if not self.rung_epochs or any(e < 1 for e in self.rung_epochs) or list(self.rung_epochs) != sorted(
                self.rung_epochs):
            raise ConfigError(f"rung epochs must be positive and increasing, got {list(self.rung_epochs)}")
        check_rank_by(self.rank_by)
        if self.estimator != RANDOM:
            parse_expression(self.estimator)

    def rung_setting(self, rung: int) -> ProxySetting:
        return replace(self.setting, epochs=self.rung_epochs[rung], seed=self.seed)

    def describe(self) -> Row:
        return {**{k: v for k, v in asdict(self).items() if k != "setting"}, "rung_epochs": list(self.rung_epochs),
                "setting": self.setting.to_dict()}


@dataclass
class Ledger:
    """Every row of the funnel, written as it comes, and the budget they spent."""

    path: Path
    budget: Budget
    rows: list[Row] = field(default_factory=list)
    stored: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def open(cls, out: Path, config: FunnelConfig) -> Ledger:
        path = out / FUNNEL_FILE
        stored = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
        return cls(path, Budget(config.budget_cpu_s), stored=stored)

    def done(self, stage: str, rung: int) -> pd.DataFrame:
        """Rows a previous run of this folder recorded for ``stage``/``rung``, by arch."""
        if self.stored.empty:
            return pd.DataFrame(columns=["arch"])
        mine = self.stored[(self.stored["stage"] == stage) & (self.stored["rung"] == rung)]
        return mine.drop_duplicates("arch", keep="last").set_index("arch", drop=False)

    def add(self, *rows: Row) -> None:
        """Record ``rows`` and rewrite the file once (the prescreen's thousand rows: one write, not a thousand)."""
        self.rows.extend(rows)
        self.save()

    def save(self) -> None:
        frame = pd.DataFrame(self.rows)
        write_atomic(self.path, lambda tmp: frame.to_parquet(tmp, index=False))


@dataclass(frozen=True)
class FunnelResult:
    chosen: Row
    rows: pd.DataFrame


def run_funnel(space: SearchSpace, data: DataSplits, out: Path, config: FunnelConfig,
               pool: Sequence[str] | None = None) -> FunnelResult:
    """Prescreen, successive halving and choice under ``config.budget_cpu_s``; see the module doc."""
    out.mkdir(parents=True, exist_ok=True)
    _check_identity(out, space, data, config, pool)
    started = time.perf_counter()
    ledger = Ledger.open(out, config)
    ordered = _prescreen(space, data, out, config, ledger, _universe(space, config, pool))
    survivors = ordered[:config.candidates]
    reached: list[Row] = []
    prior: float | None = None
    for rung in range(len(config.rung_epochs)):
        if not survivors or ledger.budget.left <= 0:
            break
        trained = _train_rung(space, data, config, ledger, rung, survivors, prior)
        if not trained:
            break
        reached = trained
        prior = _next_prior(trained, config, rung)
        survivors = [r["arch"] for r in _best_first(trained)][:max(1, math.ceil(len(trained) / config.eta))]
        if len(trained) == 1:
            break
    if not reached:
        raise ConfigError(f"a budget of {config.budget_cpu_s:g} CPU-s paid for no proxy training (the prescreen spent "
                          f"{ledger.budget.spent:.0f}); raise --budget-cpu-s or lower prescreen_share")
    chosen = _chosen(space, data, config, ledger, _best_first(reached)[0], time.perf_counter() - started)
    write_atomic(out / CHOSEN_FILE, lambda tmp: tmp.write_text(json.dumps(chosen, indent=1)))
    return FunnelResult(chosen, pd.DataFrame(ledger.rows))


# --- the prescreen --------------------------------------------------------------------------------
def _universe(space: SearchSpace, config: FunnelConfig, pool: Sequence[str] | None) -> list[str]:
    """The cells the prescreen may score, in a seeded random order: a sample of the pool or the space."""
    rng = np.random.default_rng(config.seed)
    if pool is not None:
        keys = list(dict.fromkeys(pool))
        return [keys[i] for i in rng.permutation(len(keys))[:config.prescreen]]
    matrix = space.sample_index_matrix(config.prescreen, seed=config.seed)
    return list(dict.fromkeys(space.key(a) for a in space.from_index_matrix(matrix)))


def _prescreen(space: SearchSpace, data: DataSplits, out: Path, config: FunnelConfig, ledger: Ledger,
               universe: list[str]) -> list[str]:
    """The universe, best first by the estimator, cut to what ``prescreen_share`` of the budget pays for."""
    if config.estimator == RANDOM:
        ledger.add(*(_prescreen_row(key, float("nan"), 0.0) for key in universe))
        return universe
    source = UntrainedSupernet(ModelRecord.of(space, DataInfo.of(data)), config.seed)
    probe = ProbeBatch.from_splits(data, config.probe_images, config.seed)
    indicator: IndicatorSettings = {"depth_rule": "sum", "measure": "abs_gamma"}
    store = PartStore(out / "prescreen", identity_of(source.checkpoint_id, probe, config.seed, indicator))
    expression = parse_expression(config.estimator)
    share = config.prescreen_share * config.budget_cpu_s
    with EvaluatorPool(source, None, PoolConfig(num_actors=_slots(config)), probe=probe) as actors:
        score = _scorer(source, expression, probe, store, indicator, actors)
        first = score(universe[:PRESCREEN_CHUNK])
        per_cell = float(first["cpu_s"].mean())
        affordable = int(share // per_cell) if per_cell > 0 else len(universe)
        scored = score(universe[:max(len(first), min(len(universe), affordable))])
    ledger.budget.charge(float(scored["cpu_s"].sum()))
    ledger.add(*(_prescreen_row(key, float(value), float(cost))
                 for key, value, cost in zip(scored["arch"], scored[expression.text], scored["cpu_s"])))
    logger.info(f"prescreen: {len(scored):,} of {len(universe):,} cells scored by {expression.text} in "
                f"{ledger.budget.spent:.0f} CPU-s ({per_cell:.2f} per cell)")
    order = np.argsort(-np.nan_to_num(scored[expression.text].to_numpy(float), nan=-np.inf), kind="stable")
    return [str(scored["arch"].iloc[i]) for i in order]


def _scorer(source: UntrainedSupernet, expression: Expression, probe: ProbeBatch, store: PartStore,
            indicator: IndicatorSettings, actors: EvaluatorPool) -> Callable[[list[str]], pd.DataFrame]:
    """Scores keys on the running ``actors`` (resumably, in ``store``): the expression and ``cpu_s``, their cost."""
    def score(keys: list[str]) -> pd.DataFrame:
        frame = score_architectures(source, [source.space.arch(k) for k in keys], [expression], probe=probe,
                                    pool_config=PoolConfig(num_actors=1), store=store, indicator=indicator,
                                    open_pool=lambda: contextlib.nullcontext(actors))
        seconds = [c for c in frame.columns if c.endswith("_cpu_s")]
        return frame.assign(cpu_s=frame[seconds].sum(axis=1))
    return score


def _prescreen_row(key: str, score: float, cost: float) -> Row:
    return {"arch": key, "stage": "prescreen", "rung": -1, "epochs": 0, "score": score, "cpu_seconds": cost,
            "proxy_accuracy": float("nan"), "tse": float("nan"), "tse_e": float("nan"), "status": "ok"}


# --- successive halving ---------------------------------------------------------------------------
def _train_rung(space: SearchSpace, data: DataSplits, config: FunnelConfig, ledger: Ledger, rung: int,
                keys: list[str], prior: float | None) -> list[Row]:
    """Train ``keys`` (best first) at ``rung``'s fidelity while the budget pays; their rows."""
    setting = config.rung_setting(rung)
    done = ledger.done("rung", rung)
    spent_before = {str(k): float(v) for k, v in done["cpu_seconds"].items()} if len(done) else {}
    rows: list[Row] = []
    estimate = CostEstimate(prior)
    share = Budget(ledger.budget.left / (len(config.rung_epochs) - rung))  # what is left, shared by the rungs left
    for key in keys:  # a rerun charges what its first run spent, in the same order, so it decides the same
        if key in spent_before and share.spent + spent_before[key] <= share.total:
            row = cast(Row, done.loc[key].to_dict())
            share.charge(row["cpu_seconds"])
            ledger.budget.charge(row["cpu_seconds"])
            estimate.add(row["cpu_seconds"])
            ledger.add(row)
            rows.append(row)
    todo = [k for k in keys if k not in {r["arch"] for r in rows}]
    if todo and share.left > 0:
        packed = pack_proxy_data(data, setting)
        job = ProxyJob(proxy_child_space(space, setting), packed, proxy_train_config(setting, len(packed["train_labels"])),
                       config.use_gpu, config.cpus_per_arch)
        base = {"stage": "rung", "rung": rung, "epochs": setting.epochs}

        def record(row: Row) -> None:
            ledger.budget.charge(row["cpu_seconds"])
            full = {**base, **{k: row[k] for k in ("arch", "proxy_accuracy", "tse", "tse_e", "cpu_seconds", "status")},
                    "score": float(proxy_scores(pd.DataFrame([row]), config.rank_by).iloc[0])}
            ledger.add(full)
            rows.append(full)
            logger.info(f"rung {rung} ({setting.epochs} epochs): {len(rows)}/{len(keys)} trained, "
                        f"{ledger.budget.spent:.0f}/{config.budget_cpu_s:.0f} CPU-s; {full['arch']} "
                        f"{config.rank_by} {full['score']:.4f}")

        train_within_budget(job, todo, share, estimate, _slots(config), on_row=record)
    return [r for r in rows if math.isfinite(r["score"])]


def _slots(config: FunnelConfig) -> int:
    """Children trained at once: the cluster's CPUs (or GPUs) over what one child takes."""
    resources = ray.cluster_resources()
    if config.use_gpu:
        return max(1, int(resources.get("GPU", 1)))
    return max(1, int(resources.get("CPU", 1) // config.cpus_per_arch))


def _next_prior(trained: list[Row], config: FunnelConfig, rung: int) -> float | None:
    """A child's expected cost at the next rung: this rung's mean, scaled by the epochs."""
    if rung + 1 >= len(config.rung_epochs):
        return None
    mean = float(np.mean([r["cpu_seconds"] for r in trained]))
    return mean * config.rung_epochs[rung + 1] / config.rung_epochs[rung]


def _best_first(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: -r["score"])


# --- the choice -----------------------------------------------------------------------------------
def _chosen(space: SearchSpace, data: DataSplits, config: FunnelConfig, ledger: Ledger, best: Row,
            seconds: float) -> Row:
    frame = pd.DataFrame(ledger.rows)
    costs = CostModel(space, data.num_classes, 3).costs([space.arch(best["arch"])])
    rungs = frame[frame["stage"] == "rung"]
    return {
        "arch": best["arch"], "cpu_seconds": ledger.budget.spent, "budget_cpu_s": config.budget_cpu_s,
        "rung": int(best["rung"]), "epochs": int(best["epochs"]), config.rank_by: float(best["score"]),
        "flops": int(costs["flops"][0]), "params": int(costs["params"][0]),
        "prescreen": {"cells": int((frame["stage"] == "prescreen").sum()), "estimator": config.estimator,
                      "cpu_seconds": float(frame.loc[frame["stage"] == "prescreen", "cpu_seconds"].sum())},
        "rungs": [{"rung": int(cast(int, r)), "epochs": int(g["epochs"].iloc[0]), "trained": len(g),
                   "cpu_seconds": float(g["cpu_seconds"].sum())} for r, g in rungs.groupby("rung")],
        "wall_seconds": seconds, "space": space.name, "data": data.name, "config": config.describe(),
    }


def _check_identity(out: Path, space: SearchSpace, data: DataSplits, config: FunnelConfig,
                    pool: Sequence[str] | None) -> None:
    """A folder resumes only the same funnel: another one's rows would be charged to this budget."""
    identity = {"space": space.name, "data": data.name, "config": config.describe(),
                "pool": sorted(set(pool)) if pool is not None else None}
    path = out / "funnel.json"
    if path.is_file():
        found = json.loads(path.read_text())
        if found != json.loads(json.dumps(identity)):
            changed = sorted(k for k in identity if found.get(k) != json.loads(json.dumps(identity)).get(k))
            raise ConfigError(f"{out} holds a search with other settings ({', '.join(changed)}); pass another --out, "
                              "or the same settings to resume")
        return
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(identity, indent=1)))
