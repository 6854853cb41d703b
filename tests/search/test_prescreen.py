"""The prescreen: exact fronts of a large sample, each architecture once, enqueued as the first trials."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import raynas.search.study as study_module
from raynas.cli import main
from raynas.errors import ConfigError
from raynas.estimate import BNIndicator, LatencyTable
from raynas.estimate.latency import table_signatures
from raynas.search.costs import CheapObjectives
from raynas.search.objectives import OBJECTIVES, Constraint
from raynas.search.prescreen import first_occurrences, pareto_layers, prescreen, prescreen_path
from raynas.search.study import SearchConfig, search
from raynas.space import load_space
from raynas.supernet import BATCHNORMS, build_supernet


# --- the reference: keys, list-of-Arch objectives, all pairs ---------------------------------------
def brute_front(losses: np.ndarray) -> np.ndarray:
    """O(n^2): a row is on the front when no row is no worse everywhere and better somewhere."""
    dominated = np.zeros(len(losses), dtype=bool)
    for start in range(0, len(losses), 256):
        rows = losses[start:start + 256, None, :]
        dominated[start:start + 256] = ((losses <= rows).all(axis=2) & (losses < rows).any(axis=2)).any(axis=1)
    return ~dominated


def brute_layers(losses: np.ndarray) -> np.ndarray:
    ranks, remaining, rank = np.full(len(losses), -1), np.arange(len(losses)), 0
    while remaining.size:
        on_front = brute_front(losses[remaining])
        ranks[remaining[on_front]], remaining, rank = rank, remaining[~on_front], rank + 1
    return ranks


def reference_front(space, cheap, score_archs, samples, seed, objectives, constraints):
    """The front of the same sample, reached the slow way: keys, Arch lists, per-row constraints."""
    archs = {space.key(a): a for a in space.from_index_matrix(space.sample_index_matrix(samples, seed=seed))}
    archs = list(archs.values())
    columns = cheap(archs)
    ok = [all(c.violation(float(columns[c.name][i])) <= 0 for c in constraints) for i in range(len(archs))]
    archs = [a for a, keep in zip(archs, ok) if keep]
    columns = {**{k: v[np.array(ok)] for k, v in columns.items()}, "bn_score": score_archs(archs)}
    losses = np.column_stack([columns[o] * OBJECTIVES[o].sign for o in objectives])
    return {space.key(a) for a, on in zip(archs, brute_front(losses)) if on}


def random_gamma_indicator(space_name: str) -> BNIndicator:
    """An untrained supernet whose gammas are spread like trained ones: scores with few ties."""
    supernet = build_supernet(load_space(space_name), num_classes=10, in_channels=3, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in supernet.modules():
            if isinstance(module, BATCHNORMS):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=generator))
    return BNIndicator().fit(supernet)


# --- fronts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("objectives", [("bn_score", "flops"), ("bn_score", "flops", "params"),
                                        ("flops", "bn_score", "params")])
@pytest.mark.parametrize("constraints", [(), ("flops<=1.7e5",)])
def test_front_on_the_pool_equals_brute_force(trained, pool, objectives, constraints):
    space = trained.space
    cheap = CheapObjectives(space, trained.data.num_classes, trained.data.in_channels)
    parsed = tuple(Constraint.parse(c) for c in constraints)
    kept = prescreen(space, cheap, pool.score_matrix, 6000, objectives=objectives, constraints=parsed, seed=3)
    expected = reference_front(space, cheap, lambda archs: np.array([r["bn_score"] for r in pool.score(archs)]),
                               6000, 3, objectives, parsed)
    assert set(kept.keys) == expected and (kept.table["rank"] == 0).all()
    assert kept.stats["front"] == len(expected) and kept.stats["distinct"] < 6000  # tiny has 12,800 children
    if constraints:
        assert kept.stats["feasible"] < kept.stats["distinct"] and (kept.table["flops"] <= 1.7e5).all()


@pytest.mark.parametrize("objectives", [("bn_score", "latency_ms", "flops"),
                                        ("bn_score", "flops", "params", "latency_ms")])
def test_front_with_latency_and_four_objectives_equals_brute_force(trained, pool, objectives):
    space = trained.space
    signatures = table_signatures(space)
    values = np.random.default_rng(0).permutation(len(signatures)) + 1.0  # a wrong lookup changes the sum
    latency = LatencyTable("test-device", space.name, dict(zip(signatures, values.tolist())), resolutions=(12, 16))
    cheap = CheapObjectives(space, trained.data.num_classes, trained.data.in_channels, latency)
    constraints = (Constraint.parse("params<=1e4"),)
    kept = prescreen(space, cheap, pool.score_matrix, 5000, objectives=objectives, constraints=constraints, seed=7)
    expected = reference_front(space, cheap, lambda archs: np.array([r["bn_score"] for r in pool.score(archs)]),
                               5000, 7, objectives, constraints)
    assert set(kept.keys) == expected and {"latency_ms", "params"} <= set(kept.table.columns)


@pytest.mark.parametrize("objectives", [("bn_score", "flops"), ("bn_score", "flops", "params")])
def test_front_of_a_large_space_equals_brute_force(objectives):
    space = load_space("mbv3_cifar")
    cheap, indicator = CheapObjectives(space, 10, 3), random_gamma_indicator("mbv3_cifar")
    constraints = (Constraint.parse("flops<=2e7"),)
    kept = prescreen(space, cheap, indicator.score, 8000, objectives=objectives, constraints=constraints, seed=1)
    assert set(kept.keys) == reference_front(space, cheap, indicator.score, 8000, 1, objectives, constraints)
    assert kept.stats["distinct"] == 8000 and 0 < kept.stats["feasible"] < 8000


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("levels", [3, 40, None])
def test_layers_equal_brute_force_peeling_with_ties_and_nan(k, levels):
    rng = np.random.default_rng(k)
    losses = rng.normal(size=(800, k)) if levels is None else rng.integers(0, levels, (800, k)).astype(float)
    losses[rng.integers(0, 800, 5), rng.integers(0, k, 5)] = np.nan
    finite = np.isfinite(losses).all(axis=1)
    expected = np.full(800, -1)
    expected[finite] = brute_layers(losses[finite])
    for keep in (0, 1, 60, 5000):
        ranks = pareto_layers(losses, keep)
        assert ((ranks == 0) == (expected == 0)).all()
        assert (ranks[ranks >= 0] == expected[ranks >= 0]).all()
        assert np.count_nonzero(ranks >= 0) == max(np.count_nonzero(expected == 0), min(keep, finite.sum()))
        assert (expected[finite & (ranks < 0)] >= ranks.max()).all()  # a cut front leaves no better row out


def test_keep_adds_the_next_fronts_in_order(trained, pool):
    space = trained.space
    cheap = CheapObjectives(space, trained.data.num_classes, trained.data.in_channels)
    front = prescreen(space, cheap, pool.score_matrix, 3000, objectives=("bn_score", "flops"), seed=5)
    kept = prescreen(space, cheap, pool.score_matrix, 3000, objectives=("bn_score", "flops"), seed=5, keep=40)
    assert len(kept.keys) == max(40, len(front.keys)) and set(front.keys) <= set(kept.keys)
    assert kept.table["rank"].is_monotonic_increasing and kept.keys[:len(front.keys)] == front.keys


# --- each architecture once --------------------------------------------------------------------------
def test_dedup_keeps_each_architecture_once_in_draw_order():
    space = load_space("tiny")  # 12,800 children: 20,000 draws repeat many
    matrix = space.sample_index_matrix(20_000, seed=0)
    keys = [space.key(a) for a in space.from_index_matrix(matrix)]
    first = first_occurrences(matrix)
    assert [keys[i] for i in first] == list(dict.fromkeys(keys))  # inactive dimensions are -1: rows equal keys


def test_the_kept_set_holds_no_key_twice(trained, pool):
    space = trained.space
    cheap = CheapObjectives(space, trained.data.num_classes, trained.data.in_channels)
    kept = prescreen(space, cheap, pool.score_matrix, 20_000, objectives=("flops", "params"), seed=0, keep=500)
    assert len(kept.keys) == len(set(kept.keys)) == 500
    assert kept.stats["distinct"] == len({space.key(a) for a in space.from_index_matrix(
        space.sample_index_matrix(20_000, seed=0))})


# --- in the search -----------------------------------------------------------------------------------
def trial_archs(result) -> list[str]:
    return [t.user_attrs["arch"] for t in sorted(result.study.trials, key=lambda t: t.number)]


def test_search_evaluates_the_front_first_one_row_per_trial(trained, pool, tmp_path):
    config = SearchConfig(trials=30, batch_size=8, top_k=0, seed=2, prescreen=3000, prescreen_keep=12,
                          constraints=("flops<=3e5",))
    result = search(trained, pool, tmp_path, config, progress=False)
    kept = pd.read_parquet(prescreen_path(tmp_path, "search"))
    assert 12 <= len(kept) < 30 and trial_archs(result)[:len(kept)] == kept["arch"].tolist()
    rows = result.store.to_pandas().sort_values("trial")
    assert rows["trial"].tolist() == list(range(30))
    first = rows.head(len(kept)).reset_index(drop=True)
    assert (first["status"] == "ok").all() and first["arch"].tolist() == kept["arch"].tolist()
    for name in ("bn_score", "flops"):  # the prescreen and the search measure the same thing
        np.testing.assert_allclose(first[name].to_numpy(float), kept[name].to_numpy(float))


def test_a_resume_enqueues_only_what_is_no_trial_yet(trained, pool, tmp_path, monkeypatch):
    config = SearchConfig(trials=3, batch_size=2, top_k=0, seed=4, prescreen=2000, prescreen_keep=10)
    assert len(search(trained, pool, tmp_path, config, progress=False).study.trials) == 3
    kept = pd.read_parquet(prescreen_path(tmp_path, "search"))["arch"].tolist()

    def again(*args, **kwargs):
        raise AssertionError("a resume must read the prescreen back, not run it again")

    monkeypatch.setattr(study_module, "prescreen", again)
    result = search(trained, pool, tmp_path, replace(config, trials=len(kept) + 5), progress=False)
    archs = trial_archs(result)
    assert archs[:len(kept)] == kept and len(archs) == len(kept) + 5  # no trial is left waiting
    rows = result.store.to_pandas()
    assert sorted(rows["trial"]) == list(range(len(kept) + 5)) and (rows.head(len(kept))["status"] != "duplicate").all()


def test_a_resume_with_another_prescreen_is_refused(trained, pool, tmp_path):
    search(trained, pool, tmp_path, SearchConfig(trials=2, top_k=0, prescreen=500), progress=False)
    with pytest.raises(ConfigError, match=r"prescreen=500.*prescreen=800"):
        search(trained, pool, tmp_path, SearchConfig(trials=4, top_k=0, prescreen=800), progress=False)


def test_the_command_resumes_without_enqueueing_again(trained, tmp_path, capsys):
    argv = ["search", str(trained.path), "--out", str(tmp_path), "--prescreen", "2000", "--top-k", "0",
            "--actors", "1", "--actor-cpus", "0.5", "--search-batch", "10"]
    assert main([*argv, "--trials", "40"]) == 0
    kept = pd.read_parquet(prescreen_path(tmp_path, "search"))["arch"].tolist()
    assert len(kept) <= 40 and f"{len(kept)} of {len(kept)} kept children enqueued" in capsys.readouterr().out
    assert main([*argv, "--trials", "50"]) == 0
    assert f"0 of {len(kept)} kept children enqueued ({len(kept)} are trials already)" in capsys.readouterr().out


def test_a_sample_with_no_feasible_child_keeps_nothing():
    space = load_space("tiny")
    kept = prescreen(space, CheapObjectives(space, 10, 1), None, 50, objectives=("flops", "params"),
                     constraints=(Constraint.parse("flops<=38000"),))  # the smallest child has 37,872
    assert kept.keys == [] and kept.stats["feasible"] == 0 and kept.stats["distinct"] > 0
