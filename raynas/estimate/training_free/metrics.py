"""How well predicted scores rank the truth: Spearman rho, Kendall tau and top-fraction precision.

``raynas.bpe`` judges proxies with the same correlations, but the estimate layer comes before it
and may not import it, so the ranker's metrics live here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

TOP_FRACTION = 0.05
"""The share of cells a search keeps: top-5% precision asks how many of those are truly top-5%."""


def rank_correlation(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Kendall tau-b and Spearman rho; NaN when either side is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.kendalltau(scores, truth).statistic), float(stats.spearmanr(scores, truth).statistic)


def top_precision(scores: np.ndarray, truth: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Of the ``ceil(fraction * n)`` best-scored cells, the share whose truth is in the true top as many.

    Truth tied at the cut counts as top; scores tied at the cut are broken at random, in
    expectation (a tied group straddling the cut contributes its share of hits).
    """
    s, t = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    k = max(1, math.ceil(fraction * len(s)))
    hits = (t >= np.sort(t)[-k]).astype(float)
    _, group = np.unique(-s, return_inverse=True)  # group 0 holds the highest score
    size, group_hits = np.bincount(group), np.bincount(group, weights=hits)
    taken = np.clip(k - (np.cumsum(size) - size), 0, size)
    return float((taken * group_hits / size).sum() / k)


def ranking_metrics(scores: np.ndarray, truth: np.ndarray, fraction: float = TOP_FRACTION) -> dict[str, float]:
    """``spearman_rho``, ``kendall_tau`` and ``top_precision`` of ``scores`` against ``truth``."""
    tau, rho = rank_correlation(scores, truth)
    return {"spearman_rho": rho, "kendall_tau": tau, "top_precision": top_precision(scores, truth, fraction)}
