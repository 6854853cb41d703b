"""Ranking quality on a reference: top-k under ties, percentiles, bootstrap intervals, held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from raynas.bpe.ranking import expected_top_k_mean, holdout_split, percentile_of, ranking_quality
from raynas.bpe.reference import Reference
from raynas.errors import ConfigError
from raynas.space import load_space


def test_top_k_mean_breaks_ties_in_expectation() -> None:
    truth = [90.0, 10.0, 50.0, 70.0]
    assert expected_top_k_mean([4, 3, 2, 1], truth, 1) == 90.0
    assert expected_top_k_mean([4, 3, 2, 1], truth, 2) == 50.0
    # a score that ties everything earns the mean, not the table order's luck
    assert expected_top_k_mean([1, 1, 1, 1], truth, 1) == pytest.approx(55.0)
    # the top item, then half of each of the two tied at the cut
    assert expected_top_k_mean([3, 2, 2, 0], truth, 2) == pytest.approx((90.0 + 30.0) / 2)


def test_percentile_counts_the_population_at_or_below() -> None:
    assert percentile_of(94.0, [10.0, 50.0, 94.0, 94.3]) == 75.0
    assert percentile_of(94.37, [10.0, 94.37]) == 100.0


def test_ranking_quality_of_the_truth_itself_is_perfect_and_its_intervals_hold_it() -> None:
    truth = np.random.default_rng(0).uniform(10, 94, 60)
    quality = ranking_quality(truth, truth, k=5, resamples=200)
    assert quality["kendall_tau"] == pytest.approx(1.0) and quality["spearman_rho"] == pytest.approx(1.0)
    assert quality["top1_accuracy"] == truth.max() and quality["top1_percentile"] == 100.0
    assert quality["top5_mean_accuracy"] == pytest.approx(np.sort(truth)[-5:].mean())
    noisy = truth + np.random.default_rng(1).normal(0, 20, 60)
    q = ranking_quality(noisy, truth, resamples=200)
    assert q["spearman_rho_low"] <= q["spearman_rho"] <= q["spearman_rho_high"]
    assert q["kendall_tau_low"] <= q["kendall_tau"] <= q["kendall_tau_high"] < 1.0


def test_non_finite_scores_are_left_out_and_counted() -> None:
    quality = ranking_quality([1.0, float("nan"), 3.0, 2.0], [1.0, 99.0, 3.0, 2.0], k=2, resamples=0)
    assert quality["archs"] == 3 and quality["missing"] == 1
    assert quality["top1_accuracy"] == 3.0 and quality["best_accuracy"] == 3.0
    with pytest.raises(ConfigError, match="same length"):
        ranking_quality([1.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="at least 2"):
        ranking_quality([float("nan"), 1.0], [1.0, 2.0])


def test_holdout_split_is_seeded_disjoint_and_complete() -> None:
    space = load_space("nb201")
    archs = [space.sample(__import__("random").Random(i)) for i in range(40)]
    keys = list(dict.fromkeys(space.key(a) for a in archs))
    reference = Reference(space.name, tuple(space.arch(k) for k in keys), tuple(keys),
                          tuple(float(i) for i in range(len(keys))))
    search, held = holdout_split(reference, 10, seed=3)
    assert len(held) == 10 and len(search) == len(keys) - 10
    assert not set(search.keys) & set(held.keys) and set(search.keys) | set(held.keys) == set(keys)
    assert holdout_split(reference, 10, seed=3)[1].keys == held.keys
    assert holdout_split(reference, 10, seed=4)[1].keys != held.keys
    with pytest.raises(ConfigError, match="held_out"):
        holdout_split(reference, len(keys))
