"""The Ray Tune adapter: one Tune trial per architecture on the shared evaluator pool."""

import optuna
import pytest
from optuna.trial import TrialState

from raynas.errors import ConfigError
from raynas.results.report import read_run_metadata
from raynas.search.study import SearchConfig
from raynas.search.tune_adapter import tune_search

LIMIT = 1.5e5  # about 40% of the tiny space's children are feasible


def test_nsga2_tune_search_writes_one_row_per_trial_and_marks_infeasible(trained, pool, tmp_path):
    config = SearchConfig(objectives=("bn_score", "flops"), constraints=(f"flops<={LIMIT:g}",), sampler="nsga2",
                          population=4, trials=10, batch_size=4, seed=2, run_id="tune")
    result = tune_search(trained, pool, tmp_path, config)
    table = result.store.to_pandas()
    assert sorted(table["trial"]) == list(range(10)) and set(table["evaluator"]) == {"bn_score"}
    ok, infeasible = table[table["status"] == "ok"], table[table["status"] == "infeasible"]
    # NSGA-II may propose an architecture twice, depending on which Tune trial finished first: the
    # repeat is stored as a duplicate of the original's row, never evaluated again
    duplicates = table[table["status"] == "duplicate"]
    assert len(ok) + len(infeasible) + len(duplicates) == 10 and len(infeasible) > 0
    assert set(duplicates["arch"]) <= set(ok["arch"]) | set(infeasible["arch"])
    assert (ok["flops"] <= LIMIT).all() and (infeasible["flops"] > LIMIT).all()
    assert ok["bn_score"].notna().all() and infeasible["bn_score"].isna().all()
    assert table["params"].notna().all() and (table["sampler"] == "nsga2").all()
    # Optuna saw every trial end, with both objectives and its constraint
    trials = result.study.trials
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE and len(t.values) == 2 for t in trials)
    assert all(t.constraints for t in trials)
    assert max(t.system_attrs.get("NSGAIISampler:generation", 0) for t in trials) >= 1
    assert read_run_metadata(tmp_path)["engine"] == "ray.tune"
    with pytest.raises(ConfigError, match="does not resume"):
        tune_search(trained, pool, tmp_path, config)


def test_accuracy_objective_calibrates_each_trial(trained, pool, tmp_path):
    config = SearchConfig(objectives=("accuracy", "params"), sampler=optuna.samplers.RandomSampler(seed=0), trials=3)
    result = tune_search(trained, pool, tmp_path, config, max_concurrent=1)
    table = result.store.to_pandas()
    assert sorted(table["trial"]) == [0, 1, 2] and (table["evaluator"] == "calibrate").all()
    assert table["accuracy"].between(0, 1).all() and (table["calib_images"] == 64).all()
    assert (table["sampler"] == "RandomSampler").all()


def test_bad_arguments_fail_before_any_trial(trained, pool, tmp_path):
    with pytest.raises(ConfigError, match="per_trial"):
        tune_search(trained, pool, tmp_path, SearchConfig(trials=2), per_trial="batch")
    with pytest.raises(ConfigError, match="trial_cpus"):
        tune_search(trained, pool, tmp_path, SearchConfig(trials=2), trial_cpus=0)
    with pytest.raises(ConfigError, match="the Tune adapter has no prescreen"):
        tune_search(trained, pool, tmp_path, SearchConfig(trials=2, prescreen=100))
