"""The paper's BPE trial: train every reference architecture on its own under a proxy setting.

Zheng et al. (CVPR 2020) judge a proxy setting by training each reference architecture
standalone under it and ranking them by the accuracy they reach (or, with the task's
``rank_by``, by their training speed: Ru et al., NeurIPS 2021). A trial
(``evaluate_standalone_setting``):

1. rewrites the target space to the setting's channels, cells per stage and resolution
   (``proxy_child_space``; the cell is unchanged, so every reference key maps onto itself);
2. packs the setting's share of the training split at its resolution (``pack_proxy_data``);
3. trains the reference architectures one after the other in this process (``train_proxy``:
   the trial's Ray Tune actor owns its CPUs) and keeps each one's val top-1, TSE and TSE-E;
4. returns Kendall tau and Spearman rho of the ``rank_by`` scores against the reference, the CPU
   seconds of training and evaluating them all (``cost_seconds``: what MIP weighs; CPU time, so
   other processes sharing the machine do not make a setting look dear), their mean per
   architecture (``seconds_per_arch``: the figure a proxy is budgeted by), and the wall seconds
   of the whole trial (``train_seconds``).

Each architecture's row (``PROXY_SCHEMA``) goes to ``RUNS/<trial>.parquet`` as it finishes, so the
accuracies behind a correlation are kept and can be ranked again (``benchmarks.reference_ranking``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from raynas.bpe.evaluate import DEGENERATE, ERROR, OK, device_name, rank_correlation
from raynas.bpe.proxy import ERROR as PROXY_ERROR
from raynas.bpe.proxy import (
    pack_proxy_data,
    proxy_child_space,
    proxy_scores,
    proxy_train_config,
    train_proxy,
    write_proxy_rows,
)
from raynas.bpe.proxy_setting import ProxySetting
from raynas.bpe.reference import Reference
from raynas.bpe.space import STANDALONE_HYPERPARAMETERS, score_column
from raynas.data import DataSplits
from raynas.errors import RaynasError
from raynas.space import SearchSpace


@dataclass(frozen=True)
class StandaloneTask:
    """What every standalone trial shares: the target space, the reference, the seed, where rows go."""

    space: SearchSpace
    reference: Reference
    runs_dir: str
    seed: int = 0
    use_gpu: bool = False
    rank_by: str = "accuracy"
    """What ranks the architectures (``raynas.train.speed.RANK_BY``), recorded as the trial's estimator."""


def evaluate_standalone_setting(task: StandaloneTask, setting: dict[str, Any], data: DataSplits,
                                name: str | None = None) -> dict[str, Any]:
    """Train, rank and correlate one setting; returns one trial row (without round/trial ids).

    A setting that cannot run (e.g. a batch larger than its data) is a row with status ``error``;
    architectures whose loss went non-finite are left out of the correlation and counted.
    """
    started = time.perf_counter()
    row: dict[str, Any] = {
        **{k: setting[k] for k in STANDALONE_HYPERPARAMETERS}, "estimator": score_column(task.rank_by),
        "seed": task.seed,
        "num_reference": len(task.reference), "tau": float("nan"), "rho": float("nan"), "train_seconds": 0.0,
        "score_seconds": 0.0, "seconds_per_arch": float("nan"), "failed_archs": 0,
        "device": device_name(task.use_gpu), "cpu_threads": torch.get_num_threads(), "status": OK, "error": None,
    }
    try:
        row.update(_train_and_rank(task, setting, data, name or f"trial-{uuid.uuid4().hex[:8]}"))
    except RaynasError as err:
        row.update(status=ERROR, error=f"{type(err).__name__}: {err}")
    row["train_seconds"] = time.perf_counter() - started
    row.setdefault("cost_seconds", row["train_seconds"])  # a trial that failed before training: its wall time
    return row


def _train_and_rank(task: StandaloneTask, setting: dict[str, Any], data: DataSplits, name: str) -> dict[str, Any]:
    proxy_setting = ProxySetting.from_dict({**setting, "seed": task.seed}, "trial setting")
    proxy = proxy_child_space(task.space, proxy_setting)
    packed = pack_proxy_data(data, proxy_setting)
    config = proxy_train_config(proxy_setting, len(packed["train_labels"]))
    device = "cuda" if task.use_gpu else "cpu"
    base = {"space": task.space.name, "data": data.name, **proxy_setting.to_dict(),
            "train_images": len(packed["train_labels"]), "val_images": len(packed["val_labels"]), "device": device}
    rows, path = [], Path(task.runs_dir) / f"{name}.parquet"
    for key in task.reference.keys:
        rows.append({**base, "arch": key, **train_proxy(proxy, key, packed, config, device)})
        write_proxy_rows(path, rows)
    scores = proxy_scores(pd.DataFrame(rows), task.rank_by).to_numpy(float)
    ok = np.isfinite(scores)
    tau, rho = rank_correlation(scores[ok], np.asarray(task.reference.accuracy, dtype=float)[ok])
    cpu = float(sum(r["cpu_seconds"] for r in rows))
    return {"tau": tau, "rho": rho, "train_images": base["train_images"], "cost_seconds": cpu,
            "seconds_per_arch": cpu / len(rows), "failed_archs": int(sum(r["status"] == PROXY_ERROR for r in rows)),
            "status": OK if np.isfinite(tau) else DEGENERATE}


@dataclass(frozen=True)
class StandaloneEvaluation:
    """``evaluate_standalone_setting`` bound to its task and data: what a standalone trial runs."""

    task: StandaloneTask
    data: DataSplits

    def __call__(self, setting: dict[str, Any], name: str) -> dict[str, Any]:
        return evaluate_standalone_setting(self.task, setting, self.data, name)
