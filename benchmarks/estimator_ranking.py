"""Training-free estimators, their fusions and the learned ranker, judged against a truth.

The pieces ``benchmarks.reference_ranking`` uses for issue 23's table: rankers read from the
Parquet file of ``raynas score``, fusions derived from its columns, a learned ranker judged by
k-fold cross-validation and by training on N cells and testing on the rest, and each ranker's
metrics with bootstrap intervals: Spearman, Kendall, top-5% precision, the mean true accuracy
of the top-10, and CPU-seconds per cell.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from raynas.bpe.ranking import expected_top_k_mean
from raynas.estimate.training_free import BUILD, estimator
from raynas.estimate.training_free.fusion import fusion_of, parse_expression
from raynas.estimate.training_free.metrics import rank_correlation, top_precision
from raynas.estimate.training_free.ranker import LearnedRanker
from raynas.space import SearchSpace

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Ranker:
    """Scores (higher = better) of some reference cells, and what each cell's score cost."""

    name: str
    keys: list[str]
    scores: np.ndarray
    cpu_seconds: float = float("nan")


def _read(path: Path) -> pd.DataFrame:
    """A score table, or the parts folder of an unfinished ``raynas score`` run."""
    if path.is_dir():
        return pd.concat([pd.read_parquet(p) for p in sorted(path.glob("part-*.parquet"))], ignore_index=True)
    return pd.read_parquet(path)


def read_score_files(paths: Sequence[Path]) -> pd.DataFrame:
    """The estimator columns of every file, one row per cell (a column a file lacks is NaN there)."""
    frames = [_read(p).drop_duplicates("arch", keep="last").set_index("arch") for p in paths]
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.combine_first(frame)
    return merged


def cost_per_cell(frame: pd.DataFrame, members: Sequence[str]) -> float:
    """CPU-seconds per cell of computing ``members`` (slicing the child counted once)."""
    seconds = sum(frame[f"{m}_cpu_s"].mean() for m in members)
    if any(estimator(m).kind == "network" for m in members):
        seconds += frame[f"{BUILD}_cpu_s"].mean()
    return float(seconds)


def base_rankers(frame: pd.DataFrame) -> list[Ranker]:
    names = [c for c in frame.columns if f"{c}_cpu_s" in frame.columns]
    return [Ranker(n, list(frame.index), frame[n].to_numpy(float), cost_per_cell(frame, [n])) for n in names]


def fused(frame: pd.DataFrame, expression: str) -> Ranker:
    """A fusion fitted on the cells all its members scored (label-free: they are its population)."""
    parsed = parse_expression(expression)
    scored = frame.dropna(subset=list(parsed.members))  # the cells every member scored
    columns = {m: scored[m].to_numpy(float) for m in parsed.members}
    return Ranker(expression, list(scored.index), fusion_of(parsed).fit(columns).score(columns),
                  cost_per_cell(scored, parsed.members))


def fusion_candidates(members: Sequence[str], sizes: Sequence[int] = (2, 3, 4)) -> list[str]:
    """Every unit-weight log-rank fusion of ``sizes`` members, and the vote of every 3."""
    found = [f"fuse:{'+'.join(c)}" for size in sizes for c in itertools.combinations(members, size)]
    return found + [f"vote:{'+'.join(c)}" for c in itertools.combinations(members, 3)]


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with -inf lowest, so no cell is dropped for a degenerate score."""
    return rankdata(np.asarray(values, float))


def metrics(scores: np.ndarray, truth: np.ndarray, k: int = 10) -> dict[str, float]:
    ranks = _ranks(scores)
    tau, rho = rank_correlation(ranks, truth)
    return {"spearman_rho": rho, "kendall_tau": tau, "top5pct_precision": top_precision(ranks, truth),
            f"top{k}_mean_accuracy": expected_top_k_mean(ranks, truth, k)}


def judge(ranker: Ranker, truth: dict[str, float], resamples: int, k: int = 10, seed: int = 0) -> dict[str, Any]:
    """Every metric on the cells of ``truth`` the ranker scored (a NaN score: not scored; -inf: scored
    lowest), with 95% bootstrap intervals over cells."""
    keep = [i for i, key in enumerate(ranker.keys) if key in truth and not np.isnan(ranker.scores[i])]
    s, t = ranker.scores[keep], np.array([truth[ranker.keys[i]] for i in keep])
    found = metrics(s, t, k)
    rng = np.random.default_rng(seed)
    draws = [metrics(s[pick], t[pick], k) for pick in (rng.integers(0, len(s), len(s)) for _ in range(resamples))]
    intervals = {f"{name}_{end}": float(np.nanpercentile([d[name] for d in draws], q))
                 for name in found for end, q in (("low", 2.5), ("high", 97.5))}
    return {"ranker": ranker.name, "cells": len(s), **found, **intervals, "cpu_seconds_per_cell": ranker.cpu_seconds}


def learned(space: SearchSpace, frame: pd.DataFrame, truth: dict[str, float], features: Sequence[str],
            folds: int, train_cells: int, seed: int = 0) -> list[Ranker]:
    """The ranker's out-of-fold predictions on every cell, and its predictions on the cells it was not
    trained on when fitted on ``train_cells`` seeded cells."""
    keys = [k for k in frame.index if k in truth]
    archs = [space.arch(k) for k in keys]
    columns = {f: frame.loc[keys, f].to_numpy(float) for f in features}
    target = np.array([truth[k] for k in keys])
    cost = cost_per_cell(frame, features)
    order = np.random.default_rng(seed).permutation(len(keys))
    out_of_fold = np.empty(len(keys))
    for test in np.array_split(order, folds):
        train = np.setdiff1d(order, test)
        model = LearnedRanker(features, seed=seed).fit(space, [archs[i] for i in train],
                                                       {f: c[train] for f, c in columns.items()}, target[train])
        out_of_fold[test] = model.predict(space, [archs[i] for i in test], {f: c[test] for f, c in columns.items()})
    train, test = order[:train_cells], order[train_cells:]
    model = LearnedRanker(features, seed=seed).fit(space, [archs[i] for i in train],
                                                   {f: c[train] for f, c in columns.items()}, target[train])
    held = model.predict(space, [archs[i] for i in test], {f: c[test] for f, c in columns.items()})
    label = "+".join(features)
    return [Ranker(f"ranker[{label}] {folds}-fold CV", keys, out_of_fold, cost),
            Ranker(f"ranker[{label}] trained on {train_cells}, tested on the rest", [keys[i] for i in test], held,
                   cost)]


def paired_spearman_gain(truth: np.ndarray, estimate: np.ndarray, baseline: np.ndarray, resamples: int = 1000,
                         seed: int = 0) -> dict[str, float]:
    """rho(estimate) - rho(baseline) on the same children, with a 95% bootstrap interval over children."""
    def gain(rows: np.ndarray) -> float:
        return rank_correlation(_ranks(estimate[rows]), truth[rows])[1] - rank_correlation(baseline[rows], truth[rows])[1]

    rng = np.random.default_rng(seed)
    draws = np.array([gain(rng.integers(0, len(truth), len(truth))) for _ in range(resamples)])
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return {"rho_gain": float(gain(np.arange(len(truth)))), "gain_low": float(low), "gain_high": float(high)}
