"""BN-NAS's last steps: short from-scratch training of a shortlist (ASHA), then full training
of the best child per cost target. Both stages run as Ray Tune trials and write Parquet rows
whose accuracy is on the validation split.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from raynas.atomic import write_atomic
from raynas.errors import ConfigError, TrainingError
from raynas.model_record import ModelRecord
from raynas.protocol.final import FinalModel
from raynas.protocol.targets import SHORTLIST_RULES
from raynas.protocol.tune_training import EarlyStopping, TrainedChild, train_on_tune
from raynas.results import ResultStore
from raynas.safe_load import load_weights
from raynas.search.costs import CheapObjectives
from raynas.space import SearchSpace
from raynas.train.config import TrainConfig
from raynas.train.data_feed import packed_model

SHORT, FINAL, FINETUNE = "short_train", "final_train", "finetune"
FINAL_WEIGHTS = "final"
"""Run-folder subfolder of the fully trained winners' weights, kept so a rerun never retrains one."""


@dataclass(frozen=True)
class RetrainRecipe:
    """How shortlisted children are trained: a short ASHA stage, then the winners in full.

    ``shortlist`` names the rule of ``raynas.protocol.targets.SHORTLIST_RULES`` that draws
    ``per_target`` candidates per budget from the searched children.
    """

    short: TrainConfig = field(default_factory=lambda: TrainConfig(mode="full", epochs=6, lr=0.1, weight_decay=5e-4))
    final: TrainConfig = field(default_factory=lambda: TrainConfig(mode="full", epochs=30, lr=0.1, weight_decay=5e-4))
    per_target: int = 9
    shortlist: str = "budget"
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self) -> None:
        if self.per_target < 1:
            raise ConfigError(f"shortlist size per target must be >= 1, got {self.per_target}")
        if self.shortlist not in SHORTLIST_RULES:
            raise ConfigError(f"unknown shortlist rule {self.shortlist!r}; valid: {', '.join(SHORTLIST_RULES)}")


@dataclass
class Retrained:
    """One cost target's final model: trained weights and the record of how it got there."""

    target: float
    arch: str
    val_accuracy: float
    epochs: int
    seconds: float
    child: nn.Module


def short_stage(space: SearchSpace, shortlist: dict[float, list[str]], packed: dict[str, Any],
                recipe: RetrainRecipe, run_dir: Path, store: ResultStore, cheap: CheapObjectives) -> dict[float, str]:
    """Train every target's shortlist briefly, ASHA per target; returns the best arch per target.

    The best child of a target is the one that went furthest (epochs), then the most accurate.
    Rows already in the store (a resumed run) are not trained again.
    """
    done = _stored(store, SHORT)
    target_of = {arch: target for target, archs in shortlist.items() for arch in archs}
    todo = [a for a, t in target_of.items() if (t, a) not in done]
    model = packed_model(space, packed, recipe.short.bn_layout)
    trained = train_on_tune(model, todo, packed, recipe.short, run_dir / "tune", SHORT, recipe.early_stopping,
                            cpus_per_trial=recipe.cpus_per_trial, gpus_per_trial=recipe.gpus_per_trial,
                            groups=target_of)
    offset = len(done)
    for target in sorted(shortlist):
        rows = [t for t in trained if target_of[t.arch] == target]
        _write(store, SHORT, target, rows, cheap, space, offset=offset)
        offset += len(rows)
    done = _stored(store, SHORT)
    return {target: max(archs, key=lambda a: done[(target, a)]) for target, archs in shortlist.items()}


def final_stage(space: SearchSpace, winners: dict[float, str], packed: dict[str, Any], recipe: RetrainRecipe,
                run_dir: Path, store: ResultStore, cheap: CheapObjectives) -> list[Retrained]:
    """Train each winner from scratch for ``recipe.final.epochs`` epochs (once, even when it wins
    several targets) and load its weights back into a plain child module.

    A trained winner's weights are kept in ``run_dir/final/`` before its row is written, so a
    rerun after a crash loads them instead of training it again.
    """
    unique = sorted(set(winners.values()))
    model = packed_model(space, packed, recipe.final.bn_layout)
    kept = _kept_finals(run_dir, store, unique)
    todo = [a for a in unique if a not in kept]
    trained = {t.arch: t for t in train_on_tune(model, todo, packed, recipe.final, run_dir / "tune", FINAL,
                                                keep_weights=True, cpus_per_trial=recipe.cpus_per_trial,
                                                gpus_per_trial=recipe.gpus_per_trial)}
    for arch, result in trained.items():
        kept[arch] = replace(result, weights=_keep_final(run_dir, arch, result.weights))
    _write(store, FINAL, None, [trained[a] for a in todo], cheap, space, offset=len(_stored(store, FINAL)))
    return [Retrained(target, arch, kept[arch].val_accuracy, kept[arch].epochs, kept[arch].seconds,
                      _trained_child(model, kept[arch])) for target, arch in sorted(winners.items())]


def _final_weights(run_dir: Path, arch: str) -> Path:
    return run_dir / FINAL_WEIGHTS / f"{hashlib.sha256(arch.encode()).hexdigest()[:16]}.pt"


def _keep_final(run_dir: Path, arch: str, weights: Path | None) -> Path:
    if weights is None:
        raise TrainingError(f"the Tune trial of {arch} must keep its weights, got none")
    path = _final_weights(run_dir, arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: shutil.copyfile(weights, tmp))


def _kept_finals(run_dir: Path, store: ResultStore, archs: list[str]) -> dict[str, TrainedChild]:
    """Winners a previous attempt trained in full: a ``final_train`` row and kept weights."""
    table = store.to_pandas()
    if not len(table):
        return {}
    rows = table[(table["evaluator"] == FINAL) & table["arch"].isin(archs)].drop_duplicates("arch")
    return {r["arch"]: TrainedChild(r["arch"], float(r["accuracy"]), int(r["epochs"]), float(r["eval_seconds"]),
                                    _final_weights(run_dir, r["arch"]))
            for r in rows.to_dict("records") if _final_weights(run_dir, r["arch"]).is_file()}


def finetune_stage(space: SearchSpace, finals: list[FinalModel], packed: dict[str, Any], config: TrainConfig,
                   run_dir: Path, store: ResultStore, cheap: CheapObjectives) -> list[FinalModel]:
    """BigNAS's optional last step: a short fine-tune of each deployed child from its inherited
    (calibrated) weights, as Tune trials; returns the fine-tuned models."""
    inherited = {f.arch: {k: v.detach().cpu().numpy() for k, v in f.child.state_dict().items()} for f in finals}
    model = packed_model(space, packed, config.bn_layout)
    trained = {t.arch: t for t in train_on_tune(model, sorted(inherited), packed, config, run_dir / "tune", FINETUNE,
                                                keep_weights=True, init_states=inherited)}
    _write(store, FINETUNE, None, list(trained.values()), cheap, space, offset=len(_stored(store, FINETUNE)))
    tuned = []
    for final in finals:
        result = trained[final.arch]
        tuned.append(FinalModel(final.target, final.arch, result.val_accuracy, final.seconds + result.seconds,
                                _trained_child(model, result), f"{final.how}, fine-tuned {result.epochs} epochs"))
    return tuned


def _trained_child(model: ModelRecord, result: TrainedChild) -> nn.Module:
    """The plain child ``result.arch`` of ``model`` with the weights its Tune trial kept, in eval mode."""
    if result.weights is None:
        raise TrainingError(f"the Tune trial of {result.arch} must keep its weights, got none")
    child = model.build().export(model.space.arch(result.arch))
    child.load_state_dict(load_weights(result.weights, "child's weights file"))
    return child.eval()


def _stored(store: ResultStore, stage: str) -> dict[tuple[float | None, str], tuple[int, float]]:
    table = store.to_pandas()
    if not len(table):
        return {}
    rows = table[table["evaluator"] == stage]
    return {(float(r["target"]) if pd.notna(r["target"]) else None, r["arch"]): (int(r["epochs"]), float(r["accuracy"]))
            for r in rows.to_dict("records")}


def _write(store: ResultStore, stage: str, target: float | None, trained: list[TrainedChild],
           cheap: CheapObjectives, space: SearchSpace, offset: int) -> None:
    if not trained:
        return
    costs = cheap([space.arch(t.arch) for t in trained])
    now = time.time()
    rows = [{"run_id": stage, "trial": offset + i, "arch": t.arch, "status": "ok", "evaluator": stage,
             "accuracy": t.val_accuracy, "split": "val", "epochs": t.epochs, "eval_seconds": t.seconds,
             "target": target, **{k: (int(v[i]) if k in ("flops", "params") else float(v[i])) for k, v in costs.items()},
             "started_at": now - t.seconds, "finished_at": now}
            for i, t in enumerate(trained)]
    store.write_batch(rows)
