"""How well a score ranks a reference, as a search would feel it: rank correlation and top-k quality.

Kendall tau and Spearman rho say how well a score orders every architecture; a search only keeps
the top of that order. So besides both correlations (each with a percentile-bootstrap 95%
interval over the architectures), ``ranking_quality`` reports the true accuracy of the score's
top-1 and the mean true accuracy of its top-k, with the percentile of each among a population
(by default the architectures scored). Ties in the score are broken at random, in expectation:
a tie group that straddles the cut counts with the mean truth of the group, so a score that
ties everything earns the population mean, not the luck of the table order.

``holdout_split`` cuts a reference into the cells a proxy search may look at and the cells it is
judged on, seeded, so a setting tuned on one part is measured on the other.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from raynas.bpe.evaluate import rank_correlation
from raynas.bpe.reference import Reference
from raynas.errors import ConfigError


def holdout_split(reference: Reference, held_out: int, seed: int = 0) -> tuple[Reference, Reference]:
    """(search part, held-out part): ``held_out`` rows drawn with ``seed``, both parts in table order."""
    if not 0 < held_out < len(reference):
        raise ConfigError(f"held_out must be in [1, {len(reference) - 1}] for a reference of {len(reference)} "
                          f"architectures, got {held_out}")
    chosen = set(random.Random(seed).sample(range(len(reference)), held_out))
    search = [k for i, k in enumerate(reference.keys) if i not in chosen]
    kept = [k for i, k in enumerate(reference.keys) if i in chosen]
    return reference.select(search), reference.select(kept)


def expected_top_k_mean(scores: Sequence[float], truth: Sequence[float], k: int) -> float:
    """Mean truth of the ``k`` best-scored items, ties at the cut broken uniformly at random (in expectation)."""
    s, t = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    k = min(k, len(s))
    total, left = 0.0, k
    for value in np.unique(s)[::-1]:
        group = t[s == value]
        take = min(left, len(group))
        total += take * float(group.mean())
        left -= take
        if not left:
            break
    return total / k


def percentile_of(value: float, population: Sequence[float] | np.ndarray) -> float:
    """Share of ``population`` (in %) at or below ``value``: 100 means no architecture is better."""
    return 100.0 * float(np.mean(np.asarray(population, dtype=float) <= value))


def bootstrap_interval(scores: np.ndarray, truth: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    """95% percentile-bootstrap intervals of tau and rho, resampling architectures with replacement."""
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(resamples):
        pick = rng.integers(0, len(scores), len(scores))
        tau, rho = rank_correlation(scores[pick], truth[pick])
        taus.append(tau)
        rhos.append(rho)
    low, high = (lambda v: float(np.nanpercentile(v, 2.5)), lambda v: float(np.nanpercentile(v, 97.5)))
    return {"kendall_tau_low": low(taus), "kendall_tau_high": high(taus),
            "spearman_rho_low": low(rhos), "spearman_rho_high": high(rhos)}


def ranking_quality(scores: Sequence[float], truth: Sequence[float], *, k: int = 10,
                    population: Sequence[float] | None = None, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Correlations with bootstrap intervals, and the true accuracy of the top-1 and top-``k`` picks.

    Items whose score is not finite (a failed proxy run) are left out and counted in ``missing``.
    ``population`` (default: the truth of the scored items) is what the percentiles compare to.
    """
    s, t = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    if s.shape != t.shape:
        raise ConfigError(f"scores and truth must have the same length, got {len(s)} and {len(t)}")
    ok = np.isfinite(s)
    s, t = s[ok], t[ok]
    if len(s) < 2:
        raise ConfigError(f"at least 2 architectures with a finite score are needed, got {len(s)}")
    tau, rho = rank_correlation(s, t)
    pool = t if population is None else np.asarray(population, dtype=float)
    top1, topk = expected_top_k_mean(s, t, 1), expected_top_k_mean(s, t, k)
    return {"archs": int(len(s)), "missing": int((~ok).sum()), "kendall_tau": tau, "spearman_rho": rho,
            **(bootstrap_interval(s, t, resamples, seed) if resamples else {}),
            "top1_accuracy": top1, "top1_percentile": percentile_of(top1, pool),
            f"top{k}_mean_accuracy": topk, f"top{k}_percentile": percentile_of(topk, pool),
            "best_accuracy": float(t.max()), "k": k}
