"""From-scratch training of chosen children as Ray Tune trials, optionally early-stopped by ASHA.

One trial trains one child (``raynas.train.standalone.train_child``) and reports its validation
accuracy after every epoch, so an ASHA scheduler can stop the weak ones at its rungs. The data
travels once through the object store (``tune.with_parameters``); it holds the train and val
splits only, never the test split; the supernet's ``ModelRecord`` travels with it, and each
trial builds its child from that record.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from raynas.errors import ConfigError, TrainingError
from raynas.logs import Progress, get_logger
from raynas.model_record import ModelRecord
from raynas.train.config import TrainConfig
from raynas.train.standalone import train_child

WEIGHTS_FILE = "weights.pt"

logger = get_logger(__name__)


@dataclass(frozen=True)
class EarlyStopping:
    """ASHA's rungs: every trial gets ``grace_epochs``; 1 in ``reduction_factor`` moves on."""

    grace_epochs: int = 2
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        if self.grace_epochs < 1 or self.reduction_factor < 2:
            raise ConfigError(f"ASHA needs grace_epochs >= 1 and reduction_factor >= 2, got "
                              f"{self.grace_epochs}, {self.reduction_factor}")


class GroupedASHA(FIFOScheduler):
    """One ASHA per group of trials (here: per cost target), all in one Tune experiment.

    ASHA compares a trial with the others at the same rung; across cost targets the larger
    children would win every early rung, so each target gets its own brackets. One experiment
    instead of one per target keeps every CPU busy and pays Tune's start-up once.
    """

    def __init__(self, group_of: Mapping[str, Hashable], metric: str, mode: str, max_t: int,
                 early_stopping: EarlyStopping) -> None:
        super().__init__()
        self._group_of = group_of
        self._schedulers: dict[Hashable, ASHAScheduler] = {}
        self._new_scheduler = partial(ASHAScheduler, time_attr="epoch", metric=metric, mode=mode, max_t=max_t,
                                      grace_period=early_stopping.grace_epochs,
                                      reduction_factor=early_stopping.reduction_factor)

    def _of(self, trial) -> ASHAScheduler:
        group = self._group_of[trial.config["arch"]]
        if group not in self._schedulers:
            self._schedulers[group] = self._new_scheduler()
        return self._schedulers[group]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)


class TuneProgress(tune.Callback):
    """One throttled line per Tune stage update (``Progress``): children done, running, stopped
    early by ASHA, and the best validation top-1 so far. Without it a stage of a few minutes is silent."""

    def __init__(self, stage: str, total: int, max_epochs: int) -> None:
        self.progress = Progress(logger, stage, total, "children")
        self.max_epochs = max_epochs
        self.done, self.stopped, self.best = 0, 0, 0.0
        self.running: set[str] = set()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.running.add(trial.trial_id)
        self.best = max(self.best, float(result.get("val_accuracy", 0.0)))
        self.progress.update(self.done, self._detail())

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        last = trial.last_result or {}
        self.stopped += int(last.get("epoch", self.max_epochs) < self.max_epochs)
        self.progress.update(self.done, self._detail())

    def _detail(self) -> str:
        early = f", {self.stopped} stopped early by ASHA" if self.stopped else ""
        return f"{len(self.running)} running{early}, best val top-1 {self.best:.4f}"


@dataclass(frozen=True)
class TrainedChild:
    arch: str
    val_accuracy: float
    epochs: int
    seconds: float
    weights: Path | None  # the child's state dict, when the stage keeps weights


def child_trial(trial: dict[str, Any], packed: dict[str, Any], model: ModelRecord, train: dict[str, Any],
                keep_weights: bool, init_states: dict[str, Any] | None = None) -> None:
    """The Tune trainable: train one child of ``model``, report after every epoch (weights after the last)."""
    torch.set_num_threads(1)
    config = TrainConfig.from_dict(train)
    init = (init_states or {}).get(trial["arch"])
    for state in train_child(model, model.space.arch(trial["arch"]), packed, config, init_state=init):
        metrics = {"val_accuracy": state.val_accuracy, "epoch": state.epoch, "seconds": state.seconds,
                   "train_loss": state.train_loss}
        if keep_weights and state.epoch == config.epochs:
            with tempfile.TemporaryDirectory() as folder:
                torch.save(state.child.state_dict(), Path(folder) / WEIGHTS_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(metrics)


def quiet_tune() -> None:
    """Keep Tune's experiment banners and checkpoint-sync warnings off the user's terminal (the
    main job prints one line per stage, and Tune's own files keep everything), and Ctrl-C raising."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's own Ctrl-C handler ends the experiment and returns as if it had finished; raynas
    # lets the interrupt through instead, so the command stops with its one line and exit 130
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def train_on_tune(model: ModelRecord, archs: Sequence[str], packed: dict[str, Any], config: TrainConfig,
                  storage: Path, name: str, early_stopping: EarlyStopping | None = None,
                  keep_weights: bool = False, cpus_per_trial: float = 1.0,
                  gpus_per_trial: float = 0.0, groups: Mapping[str, Hashable] | None = None,
                  init_states: dict[str, dict[str, Any]] | None = None) -> list[TrainedChild]:
    """Train each of ``archs`` (children of the supernet ``model`` describes) for up to
    ``config.epochs`` epochs; one Tune trial per child.

    With ``early_stopping``, ASHA stops weak children at its rungs; ``groups`` (arch -> group)
    gives each group its own ASHA brackets (``GroupedASHA``). ``init_states`` (arch -> state
    dict of numpy arrays) starts those children from given weights instead of from scratch.
    """
    if not archs:
        return []
    quiet_tune()
    scheduler = None
    if early_stopping is not None and config.epochs > early_stopping.grace_epochs:
        scheduler = GroupedASHA(groups or {a: 0 for a in archs}, "val_accuracy", "max", config.epochs, early_stopping)
    trainable = tune.with_resources(
        tune.with_parameters(child_trial, packed=packed, model=model, train=config.to_dict(),
                             keep_weights=keep_weights, init_states=init_states),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"arch": tune.grid_search(list(archs))},
        # one actor per slot trains trial after trial: a fresh process per child costs more than a
        # short child trains on small data (digits: ~5 s of start-up against ~3 s of training)
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage.resolve()), verbose=0,
                                  callbacks=[TuneProgress(name, len(archs), config.epochs)],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    grid = tuner.fit()
    trained = []
    for result in (grid[i] for i in range(len(grid))):
        if result.error is not None or not result.metrics or not result.config:
            raise TrainingError(f"training {result.config.get('arch') if result.config else '?'} failed "
                                f"in Tune run {storage / name}: {result.error or 'no result reported'}")
        weights = Path(result.checkpoint.path) / WEIGHTS_FILE if keep_weights and result.checkpoint else None
        trained.append(TrainedChild(result.config["arch"], float(result.metrics["val_accuracy"]),
                                    int(result.metrics["epoch"]), float(result.metrics["seconds"]), weights))
    return trained
