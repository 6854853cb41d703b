"""The main job, ``raynas run``: from data to one shipped model per cost target, every stage on Ray.

BN-NAS path (default): a multi-fidelity funnel
    BN-only supernet (Ray Train) -> prescreen: search over BN score x cost on evaluator actors
    (Optuna; with ``--estimator EXPR``, a training-free estimator's score of the same children x
    cost) -> candidates per target, anywhere under its budget (``budget_shortlist``) -> short
    from-scratch training, successive halving per target (Ray Tune + ASHA) -> full training of
    the survivor per target (Ray Tune) -> test top-1 -> export
BigNAS path (``mode="full"``):
    fully trained supernet (Ray Train) -> coarse-to-fine selection, BN-calibrated children scored
    on validation -> calibrated children deployed without retraining -> test top-1 -> export

Each stage writes Parquet rows that say which split their accuracy comes from, and re-running
with the same run folder resumes: stages whose rows exist are not run again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from raynas.data import DataSplits
from raynas.errors import ConfigError
from raynas.logs import get_logger
from raynas.estimate.calibration import calibrate_bn, calibration_subset
from raynas.protocol.final import FinalModel
from raynas.protocol.retraining import FINAL, SHORT, RetrainRecipe, final_stage, finetune_stage, short_stage
from raynas.protocol.funnel import Funnel, asha_rungs
from raynas.protocol.targets import SHORTLIST_RULES, check_targets, cost_quantile_targets
from raynas.results import ResultStore
from raynas.results.report import RunDir, write_run_metadata
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.coarse_to_fine import coarse_to_fine
from raynas.search.costs import CheapObjectives
from raynas.search.objectives import CHEAP, QUALITY, Constraint
from raynas.search.study import SearchConfig, record_stage, search, search_probe
from raynas.train import LoadedCheckpoint, TrainConfig
from raynas.train.data_feed import pack_splits

logger = get_logger(__name__)


def parse_targets(text: str | None, constraints: Sequence[Constraint], cost_name: str) -> int | list[float]:
    """``"3"`` -> three budgets spread over the cost range; ``"2e4,5e4"`` -> those budgets.

    Without ``--targets``, a ``cost<=X`` constraint on the cost objective is the one target;
    with neither, three targets (BigNAS reports S/M/L/XL).
    """
    if text is None:
        limits = [c.limit for c in constraints if c.name == cost_name and c.op == "<="]
        return [min(limits)] if limits else 3
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"--targets must be a count such as 3 or budgets such as 2e4,5e4, got {text!r}") from None


def cost_objective(objectives: Sequence[str]) -> str:
    """The search's cost objective (flops, params or latency_ms): what targets are budgets on."""
    costs = [o for o in objectives if o in CHEAP]
    if not costs:
        raise ConfigError(f"the main job needs a cost objective among {list(CHEAP)}, got {list(objectives)}")
    return costs[0]


def quality_objective(objectives: Sequence[str]) -> str:
    """The search's objective that predicts accuracy (bn_score, estimate or accuracy): what the shortlist ranks by."""
    quality = [o for o in objectives if o in QUALITY]
    if not quality:
        raise ConfigError(f"the main job ranks its search by one of {list(QUALITY)}, got objectives {list(objectives)}")
    return quality[0]


def resolve_targets(spec: int | list[float], cheap: CheapObjectives, cost_name: str,
                    constraints: Sequence[Constraint], seed: int) -> list[float]:
    targets = cost_quantile_targets(cheap, spec, cost_name, seed) if isinstance(spec, int) else list(spec)
    for c in constraints:  # budgets beyond a hard constraint are clipped to it
        if c.name == cost_name and c.op == "<=":
            targets = sorted({min(t, c.limit) for t in targets})
    return check_targets(cheap, targets, cost_name)


def bnnas_finals(checkpoint: LoadedCheckpoint, data: DataSplits, run: RunDir, pool_config: PoolConfig,
                 search_config: SearchConfig, budgets: list[float], cheap: CheapObjectives,
                 recipe: RetrainRecipe) -> tuple[list[FinalModel], Funnel]:
    """Search by BN score (or the ``estimate`` of ``search_config.estimator``), then train
    candidates per budget by successive halving and the survivor in full; returns the final
    models and the record of how each was chosen."""
    space = checkpoint.space
    cost_name = cost_objective(search_config.objectives)
    quality = quality_objective(search_config.objectives)
    probe = search_probe(search_config, data)
    with EvaluatorPool(checkpoint, data, pool_config, probe=probe) as pool:
        search(checkpoint, pool, run.root, replace(search_config, top_k=0), cheap.latency_table)
    store = ResultStore(run.results, space)
    table = store.to_pandas()
    scored = table[(table["evaluator"] == search_config.evaluator) & (table["status"] == "ok")]
    shortlist = SHORTLIST_RULES[recipe.shortlist](scored, budgets, cost_name, recipe.per_target, score=quality)
    empty = [t for t, archs in shortlist.items() if not archs]
    if empty:
        raise ConfigError(f"no searched child meets the {cost_name} target(s) {empty}; search more trials "
                          "or raise the targets")
    packed = pack_splits(data)
    rungs = asha_rungs(recipe.early_stopping, recipe.short.epochs)
    logger.info(f"shortlist: {sum(map(len, shortlist.values()))} children over {len(budgets)} {cost_name} "
        f"targets ({recipe.shortlist} rule), trained {recipe.short.epochs} epochs at most (ASHA, rungs "
        f"{'/'.join(map(str, rungs))}, 1 in {recipe.early_stopping.reduction_factor} goes on)")
    winners = short_stage(space, shortlist, packed, recipe, run.root, store, cheap)
    logger.info(f"full training of {len(set(winners.values()))} winner(s) for {recipe.final.epochs} epochs")
    retrained = final_stage(space, winners, packed, recipe, run.root, store, cheap)
    _record_in_study(run, search_config.run_id, store)
    table = store.to_pandas()
    ranked_by = f"{quality}+{cost_name}" if recipe.shortlist == "budget" else quality
    funnel = Funnel.of(recipe.shortlist, ranked_by, scored["arch"].nunique(), rungs, recipe.final.epochs, shortlist,
                       table[table["evaluator"] == SHORT], winners)
    return [FinalModel(r.target, r.arch, r.val_accuracy, r.seconds, r.child, funnel.how(r.target))
            for r in retrained], funnel


def bignas_finals(checkpoint: LoadedCheckpoint, data: DataSplits, run: RunDir, pool_config: PoolConfig,
                  budgets: list[float], cheap: CheapObjectives, cost_name: str, perturbations: int = 20,
                  seed: int = 0, finetune: TrainConfig | None = None) -> list[FinalModel]:
    """Coarse-to-fine selection on the fully trained supernet; winners deploy BN-calibrated,
    optionally after a short fine-tune from their inherited weights (``finetune``)."""
    space = checkpoint.space
    store = ResultStore(run.results, space)
    write_run_metadata(run.root, checkpoint.model, run_id="coarse_to_fine", checkpoint=str(checkpoint.path),
                       checkpoint_id=checkpoint.checkpoint_id,
                       selection={"cost": cost_name, "budgets": budgets, "perturbations": perturbations, "seed": seed})
    with EvaluatorPool(checkpoint, data, pool_config) as pool:
        result = coarse_to_fine(space, pool, cheap, budgets, cost_name, perturbations, seed,
                                checkpoint_id=checkpoint.checkpoint_id)
    store.write_batch(list(result.rows))
    logger.info(f"coarse-to-fine: {result.grid_size} grid children, {result.evaluated} calibrated on "
        f"{pool_config.calibration.images} images and scored on {len(data.val)} val images")
    supernet = checkpoint.supernet
    subset = calibration_subset(data.calib, pool_config.calibration)
    finals = []
    for winner in result.winners:
        started = time.perf_counter()
        arch = space.arch(winner.arch)
        calibrate_bn(supernet, arch, subset.images, data.mean, data.std, pool_config.calibration.batch_size)
        finals.append(FinalModel(winner.target, winner.arch, winner.accuracy, time.perf_counter() - started,
                                 supernet.export(arch).eval(), f"calibrated on {len(subset)} images ({winner.stage})"))
    if finetune is None:
        return finals
    logger.info(f"fine-tune {len(finals)} calibrated child(ren) for {finetune.epochs} epochs at lr {finetune.lr:g}")
    return finetune_stage(space, finals, pack_splits(data), finetune, run.root, store, cheap)


def _record_in_study(run: RunDir, run_id: str, store: ResultStore) -> None:
    """Later-stage accuracies as user attributes of the Optuna study, for optuna-dashboard."""
    table = store.to_pandas()
    for stage in (SHORT, FINAL):
        rows = table[table["evaluator"] == stage]
        record_stage(run.root, run_id, stage, [{"arch": r["arch"], "val_accuracy": float(r["accuracy"]),
                                                "epochs": int(r["epochs"]), "seconds": float(r["eval_seconds"])}
                                               for r in rows.to_dict("records")])


def default_recipe(data: DataSplits, gpus: float = 0.0) -> RetrainRecipe:
    """Retraining budgets sized to the dataset: small data affords more epochs per child."""
    small = len(data.train) <= 5_000  # small batches there: enough steps per epoch for ASHA's first rung
    batch = 32 if small else 64
    short = RetrainRecipe().short.replace(epochs=6 if small else 4, batch_size=batch)
    final = RetrainRecipe().final.replace(epochs=30 if small else 15, batch_size=batch)
    return RetrainRecipe(short=short, final=final, gpus_per_trial=gpus)


def finals_out(run: RunDir) -> Path:
    return run.root / "final.json"
