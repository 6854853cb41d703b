"""One BPE evaluation: proxy-train a supernet under a setting, score the reference set, correlate.

A trial (``evaluate_setting``):

1. maps the target space and the reference architectures into the proxy space
   (``width_multiplier`` and ``resolution``, see ``raynas.bpe.space``);
2. trains that supernet with ``train_supernet`` (``Scaling(num_workers=0)``: in this process)
   for ``epochs`` at ``batch_size`` and ``lr`` in ``mode``, ``sandwich_size`` children per step
   sampled by the task's ``sampling`` (the sandwich rule: largest, smallest and random ones;
   uniform: random ones only), on the first ``data_fraction`` of the training split (at least
   one batch);
3. scores the mapped reference set with the trial's estimator: the BN indicator (a table
   lookup, combined over ops by the task's ``depth_rule``) or calibrated accuracy (BN
   recalibrated on ``calib_images`` images, then top-1 on the validation split);
4. returns Kendall tau and Spearman rho of those scores against the reference accuracies
   (scipy.stats; tau-b, so ties are handled), the wall seconds of steps 1-3, and the device.

``BPETrial`` runs it as a Ray Tune trial. It is a class trainable on purpose: inside a function
trainable Ray 2.60 refuses ``ray.train.get_context`` (ray-project/ray#49454), which Ray Train's
local mode (``num_workers=0``) calls; a class trainable's ``step`` runs outside that session.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray import tune

from raynas.bpe.reference import Reference
from raynas.bpe.space import HYPERPARAMETERS, BPESpace, Setting, proxy_arch, proxy_space
from raynas.data import DataSplits
from raynas.errors import RaynasError, TrainingError
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.estimate.training_free.metrics import rank_correlation
from raynas.search.recipes import resolve_depth_rule, resolve_sampling
from raynas.space import Arch
from raynas.supernet import Supernet
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet

OK = "ok"
DEGENERATE = "degenerate"
"""Status of a trial whose scores (or reference) are constant: no rank correlation exists, tau is NaN."""
ERROR = "error"


@dataclass(frozen=True)
class ProxyTask:
    """Everything a trial needs besides its setting and the data (picklable, sent to Tune trials).

    ``sampling`` and ``depth_rule`` left as None take the target space's defaults
    (``raynas.search.recipes``); a ``sampling`` in the file's ``train:`` section comes before them.
    """

    bpe: BPESpace
    reference: Reference
    runs_dir: str
    use_gpu: bool = False
    keep_runs: bool = False
    sampling: str | None = None
    depth_rule: str | None = None

    def __post_init__(self) -> None:
        space = self.bpe.target_space
        object.__setattr__(self, "sampling", resolve_sampling(self.sampling or self.bpe.train.get("sampling"), space))
        object.__setattr__(self, "depth_rule", resolve_depth_rule(self.depth_rule, space))


def trial_config(bpe: BPESpace, setting: Setting, train_size: int, sampling: str | None = None) -> TrainConfig:
    """The TrainConfig of a setting: the file's ``train:`` keys plus the hyper-parameters.

    ``sandwich_size`` counts the children per step: under the sandwich rule the largest, the
    smallest and ``sandwich_size - 2`` random ones; under uniform sampling ``sandwich_size``
    random ones. ``sampling`` None keeps the file's (or ``TrainConfig``'s) sampling.
    """
    batch = int(setting["batch_size"])
    images = max(batch, round(float(setting["data_fraction"]) * train_size))
    base = bpe.base_config()
    sampling = sampling or base.sampling
    children = int(setting["sandwich_size"])
    return base.replace(
        mode=setting["mode"], epochs=int(setting["epochs"]), batch_size=batch, lr=float(setting["lr"]),
        sampling=sampling, num_random=children if sampling == "uniform" else children - 2,
        train_images=min(images, train_size),
    )


def evaluate_setting(task: ProxyTask, setting: Setting, data: DataSplits, name: str | None = None) -> dict[str, Any]:
    """Train, score and correlate one setting; returns one trial row (without round/trial ids).

    Errors raised on purpose (``RaynasError``, e.g. a NaN loss) become a row with status
    ``error``; anything else propagates.
    """
    started = time.perf_counter()
    row: dict[str, Any] = {
        **{k: setting[k] for k in HYPERPARAMETERS}, "estimator": task.bpe.estimator_for(setting["mode"]),
        "seed": task.bpe.seed, "num_reference": len(task.reference), "tau": float("nan"), "rho": float("nan"),
        "train_seconds": 0.0, "score_seconds": 0.0, "device": device_name(task.use_gpu),
        "cpu_threads": torch.get_num_threads(), "status": OK, "error": None,
    }
    run_dir = Path(task.runs_dir) / (name or f"trial-{uuid.uuid4().hex[:8]}")
    try:
        row.update(_train_and_score(task, setting, data, run_dir, row["estimator"]))
    except RaynasError as err:
        row.update(status=ERROR, error=f"{type(err).__name__}: {err}")
    finally:
        if not task.keep_runs:
            shutil.rmtree(run_dir, ignore_errors=True)
    row["cost_seconds"] = time.perf_counter() - started
    return row


def _train_and_score(task: ProxyTask, setting: Setting, data: DataSplits, run_dir: Path,
                     estimator: str) -> dict[str, Any]:
    space = task.bpe.target_space
    width, resolution = float(setting["width_multiplier"]), setting["resolution"]
    proxy = proxy_space(space, width, resolution)
    archs = [proxy_arch(space, proxy, arch, width, resolution) for arch in task.reference.archs]
    config = trial_config(task.bpe, setting, len(data.train), task.sampling)
    started = time.perf_counter()
    scaling = Scaling(num_workers=0, use_gpu=task.use_gpu)
    result = train_supernet(proxy, data, config, scaling, run_dir.parent, run_dir.name)
    trained = time.perf_counter()
    supernet = load_checkpoint(result.checkpoint).supernet
    scores = score_archs(supernet, archs, estimator, data, int(setting["calib_images"]), task.bpe.seed,
                         task.depth_rule)
    tau, rho = rank_correlation(scores, np.asarray(task.reference.accuracy))
    return {"tau": tau, "rho": rho, "train_images": config.train_images, "train_seconds": trained - started,
            "score_seconds": time.perf_counter() - trained, "status": OK if np.isfinite(tau) else DEGENERATE}


def score_archs(supernet: Supernet, archs: list[Arch], estimator: str, data: DataSplits, calib_images: int,
                seed: int = 0, depth_rule: str = "sum") -> np.ndarray:
    """One score per architecture (higher = predicted better); duplicates are scored once."""
    if estimator == "bn_score":
        return BNIndicator(depth_rule=depth_rule).fit(supernet).score(archs)
    calibration = CalibrationConfig(images=calib_images, seed=seed)
    cache: dict[Arch, float] = {}
    for arch in archs:
        if arch not in cache:
            cache[arch] = calibrate_and_evaluate(supernet, arch, data.calib, data.val, data.mean, data.std,
                                                 calibration)["accuracy"]
    return np.array([cache[a] for a in archs])


def device_name(use_gpu: bool) -> str:
    """``cpu``, or the GPU's name."""
    if use_gpu and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu"


Evaluate = Callable[[Setting, str], dict[str, Any]]
"""(setting, run name) -> one trial row with ``tau``, ``rho``, ``cost_seconds``, ``status`` and ``error``."""


@dataclass(frozen=True)
class SupernetEvaluation:
    """``evaluate_setting`` bound to its task and data: what a supernet-proxy trial runs."""

    task: ProxyTask
    data: DataSplits

    def __call__(self, setting: Setting, name: str) -> dict[str, Any]:
        return evaluate_setting(self.task, setting, self.data, name)


class BPETrial(tune.Trainable):
    """A Ray Tune trial that evaluates one setting (its config) in one step and stops.

    ``evaluate`` says how (a supernet proxy, or standalone training); the trial reports its row
    and ``tau_objective``: the ``metric`` column (``tau`` or ``rho``), 0 where it has none.
    """

    def setup(self, config: dict[str, Any], evaluate: Evaluate | None = None, metric: str = "tau") -> None:
        self.evaluate, self.metric = evaluate, metric

    def step(self) -> dict[str, Any]:
        if self.evaluate is None:
            raise TrainingError("a BPE trial needs its evaluate function: pass it with tune.with_parameters")
        row = self.evaluate({**self.config}, f"{self.trial_id}-{uuid.uuid4().hex[:6]}")
        value = row[self.metric]
        objective = float(value) if np.isfinite(value) else 0.0
        return {**row, "error": row["error"] or "", "tau_objective": objective, "done": True}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        return True  # nothing is cached per setting, so the actor can run the next trial

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        return {}  # one step per trial: there is nothing to resume
