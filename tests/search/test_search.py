"""Multi-objective search over the evaluator pool: samplers, constraints, Parquet, resume."""

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pandas as pd
import pytest

from raynas.errors import ConfigError
from raynas.estimate import BNIndicator
from raynas.results.report import read_run_metadata
from raynas.search import EvaluatorPool
from raynas.search.samplers import SAMPLERS
from raynas.search.study import Search, SearchConfig, read_stage, record_stage, search


def one_row_per_trial(store, evaluator):
    table = store.to_pandas()
    rows = table[table["evaluator"] == evaluator]
    return rows["trial"].tolist()


def test_search_writes_one_row_per_trial_and_calibrates_top_k(trained, pool, tmp_path):
    config = SearchConfig(trials=60, batch_size=25, top_k=4, constraints=("flops<=4e5",), seed=1)
    result = search(trained, pool, tmp_path, config, progress=False)
    trials = one_row_per_trial(result.store, "bn_score")
    assert sorted(trials) == list(range(60))
    table = result.store.to_pandas()
    scored = table[table["evaluator"] == "bn_score"]
    infeasible = scored[scored["status"] == "infeasible"]
    feasible = scored[scored["status"] == "ok"]
    assert (feasible["flops"] <= 4e5).all() and (infeasible["flops"] > 4e5).all()
    assert infeasible["bn_score"].isna().all() and feasible["bn_score"].notna().all()
    assert len(result.calibrated) == 4 and all(r["calib_images"] == 64 for r in result.calibrated)
    assert {"s0_width", "s1_b1_kernel", "sampler", "seed", "node_id", "checkpoint_id"} <= set(table.columns)
    assert all(t.constraints for t in result.study.trials)
    # the top K come from the first Pareto fronts of the feasible BN-score stage
    assert set(r["trial"] for r in result.calibrated) <= set(feasible["trial"])


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_named_sampler_runs(trained, pool, tmp_path, sampler):
    config = SearchConfig(trials=12, batch_size=6, top_k=0, sampler=sampler, population=6)
    result = search(trained, pool, tmp_path, config, progress=False)
    assert len(result.study.trials) == 12 and sorted(one_row_per_trial(result.store, "bn_score")) == list(range(12))


def test_a_user_sampler_object_and_three_objectives(trained, pool, tmp_path):
    config = SearchConfig(objectives=("bn_score", "flops", "params"), trials=10, batch_size=5, top_k=0,
                          sampler=optuna.samplers.RandomSampler(seed=3))
    result = search(trained, pool, tmp_path, config, progress=False)
    assert len(result.study.directions) == 3
    assert result.store.to_pandas()["sampler"].unique().tolist() == ["RandomSampler"]


def test_accuracy_objective_calibrates_every_trial(trained, pool, tmp_path):
    result = search(trained, pool, tmp_path, SearchConfig(objectives=("accuracy", "flops"), trials=4, batch_size=4),
                    progress=False)
    table = result.store.to_pandas()
    assert (table["evaluator"] == "calibrate").all() and table["accuracy"].notna().all() and len(table) == 4


def test_bad_names_and_impossible_constraints(trained, pool, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown objective\(s\) \['acc'\]; valid objectives: \['accuracy'"):
        SearchConfig(objectives=("acc", "flops"))
    with pytest.raises(ConfigError, match=r"unknown sampler 'cmaes'; valid samplers: \['gp', 'nsga2'"):
        search(trained, pool, tmp_path, SearchConfig(sampler="cmaes"), progress=False)
    with pytest.raises(ConfigError, match=r"constraint flops<=1000 cannot be met: the smallest child of tiny has flops=37,872"):
        search(trained, pool, tmp_path, SearchConfig(constraints=("flops<=1e3",)), progress=False)
    with pytest.raises(ConfigError, match="constraint must look like"):
        SearchConfig(constraints=("flops < lots",))


DRIVER = textwrap.dedent("""
    import sys, ray
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    from raynas.data import load_data
    from raynas.estimate.calibration import CalibrationConfig
    from raynas.search import EvaluatorPool, PoolConfig
    from raynas.search.study import SearchConfig, search
    from raynas.train import load_checkpoint
    ck = load_checkpoint(sys.argv[1])
    with EvaluatorPool(ck, None, PoolConfig(num_actors=1, num_cpus=0.5)) as pool:
        search(ck, pool, sys.argv[2], SearchConfig(trials=400, batch_size=10, top_k=0, run_id="killme"))
""")


@pytest.mark.slow
def test_driver_killed_mid_search_resumes_with_exactly_one_row_per_trial(trained, pool, tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(trained.path), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = 0
    deadline = time.time() + 240
    while seen < 5 and time.time() < deadline:
        line = proc.stdout.readline()
        seen += "[raynas] search" in line
    assert seen >= 5, "the driver never got going"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = optuna.load_study(study_name="killme", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))))
    assert 0 < len(interrupted.trials) < 400
    result = search(trained, pool, out, SearchConfig(trials=400, batch_size=10, top_k=0, run_id="killme"), progress=False)
    states = {t.state for t in result.study.trials}
    assert len(result.study.trials) == 400 and states <= {optuna.trial.TrialState.COMPLETE}
    assert sorted(one_row_per_trial(result.store, "bn_score")) == list(range(400))
    table = result.store.to_pandas()  # the journal matches Parquet, and no architecture was scored twice
    journal = journal_study(out, "killme").trials
    assert {t.number: t.user_attrs["arch"] for t in journal} == dict(zip(table["trial"], table["arch"]))
    assert table.loc[table["status"] == "ok", "arch"].is_unique


# --- no architecture evaluated twice ---------------------------------------------------------------
class CountingPool:
    """The module's pool, counting the architectures sent to its actors."""

    def __init__(self, pool):
        self.pool, self.actors, self.config = pool, pool.actors, pool.config
        self.evaluated = []

    def score(self, archs, batch_size=4096):
        self.evaluated += [a.to_dict() for a in archs]
        return self.pool.score(archs, batch_size)

    def calibrate_and_evaluate(self, archs, batch_size=4):
        self.evaluated += [a.to_dict() for a in archs]
        return self.pool.calibrate_and_evaluate(archs, batch_size)


def journal_study(out, run_id):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=run_id, storage=storage)


def assert_evaluated_once(table, study, objectives):
    """The contract both engines keep: one row per trial, one ``ok`` row per architecture, and
    each ``duplicate`` row (and its Optuna trial) holding its original's values."""
    assert sorted(table["trial"]) == list(range(len(table)))
    ok, dup = table[table["status"] == "ok"], table[table["status"] == "duplicate"]
    assert len(ok) + len(dup) == len(table) and len(dup) > 0
    assert ok["arch"].is_unique and set(ok["arch"]) == set(table["arch"])
    original = ok.set_index("arch")
    for row in dup.itertuples():
        assert [getattr(row, o) for o in objectives] == [original.loc[row.arch, o] for o in objectives]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert len(trials) == len(table) and study.metric_names == list(objectives)
    for row in table.itertuples():
        trial = trials[row.trial]
        assert trial.user_attrs["arch"] == row.arch
        first = trials[int(original.loc[row.arch, "trial"])]
        assert trial.values == first.values and trial.constraints == first.constraints


@pytest.mark.parametrize("engine", ["search", "tune"])
def test_each_architecture_is_evaluated_once(trained, pool, tmp_path, repeating_sampler, engine):
    from raynas.search.tune_adapter import tune_search

    config = SearchConfig(trials=10, batch_size=6, top_k=0, sampler=repeating_sampler(4), constraints=("flops<=1e9",),
                          run_id="dups")
    if engine == "search":
        counting = CountingPool(pool)
        result = Search(trained, counting, tmp_path, config).run(progress=False)
        study = journal_study(tmp_path, "dups")
        assert len(counting.evaluated) == 4  # trials 4 and 5 repeat 0 and 1 inside the first batch
    else:
        result = tune_search(trained, pool, tmp_path, config, max_concurrent=3)
        study = result.study
    table = result.store.to_pandas()
    assert_evaluated_once(table, study, config.objectives)
    assert table.loc[table["status"] == "duplicate", "eval_seconds"].isna().all()


def test_resume_evaluates_no_architecture_again_and_keeps_one_row_per_trial(trained, pool, tmp_path,
                                                                          repeating_sampler):
    counting = CountingPool(pool)

    def run(trials):
        config = SearchConfig(trials=trials, batch_size=6, top_k=0, sampler=repeating_sampler(5), run_id="resume")
        return Search(trained, counting, tmp_path, config).run(progress=False)

    run(8)
    assert len(counting.evaluated) == 5
    run(14)  # resumed from the journal: every new trial repeats a known architecture
    (tmp_path / "study.journal").unlink()  # as if the driver died before any journal write
    result = run(17)  # rebuilt from Parquet alone, duplicate rows included
    assert len(counting.evaluated) == 5
    table = result.store.to_pandas()
    assert (table.groupby("status").size().to_dict()) == {"duplicate": 12, "ok": 5}
    assert_evaluated_once(table, journal_study(tmp_path, "resume"), ("bn_score", "flops"))
    assert [t.state for t in result.study.trials] == [optuna.trial.TrialState.COMPLETE] * 17


def test_duplicates_of_a_calibrated_architecture_copy_accuracy_and_split(trained, pool, tmp_path, repeating_sampler):
    counting = CountingPool(pool)
    config = SearchConfig(objectives=("accuracy", "flops"), trials=3, batch_size=3, sampler=repeating_sampler(1))
    table = Search(trained, counting, tmp_path, config).run(progress=False).store.to_pandas()
    assert len(counting.evaluated) == 1
    assert table["status"].tolist() == ["ok", "duplicate", "duplicate"] and table["arch"].nunique() == 1
    assert table["accuracy"].nunique() == 1 and (table["split"] == "val").all() and (table["calib_images"] == 64).all()


def test_top_k_calibration_runs_once_per_architecture(trained, pool, tmp_path, repeating_sampler):
    config = SearchConfig(trials=12, batch_size=6, top_k=10, sampler=repeating_sampler(3))
    result = search(trained, pool, tmp_path, config, progress=False)
    calibrated = result.store.to_pandas().query("evaluator == 'calibrate'")
    assert len(result.calibrated) == len(calibrated) == 3 and calibrated["arch"].is_unique


# --- what the study carries: metric names, arch keys, later stages ------------------------------
def test_record_stage_round_trips_through_the_journal(trained, pool, tmp_path):
    search(trained, pool, tmp_path, SearchConfig(trials=4, batch_size=4, top_k=0, run_id="stages"), progress=False)
    study = journal_study(tmp_path, "stages")
    assert study.metric_names == ["bn_score", "flops"]
    keys = [t.user_attrs["arch"] for t in study.trials]
    short = [{"arch": keys[0], "accuracy": 0.5, "split": "val", "epochs": 3},
             {"arch": keys[1], "accuracy": np.float64(0.25), "split": "val", "epochs": np.int64(1)}]
    record_stage(tmp_path, "stages", "short_train", short)
    record_stage(tmp_path, "stages", "final", [{"arch": keys[0], "val_accuracy": 0.6, "test_accuracy": 0.55,
                                                "seconds": 12.5}])
    record_stage(tmp_path, "stages", "short_train", [{**short[0], "epochs": 9}])  # recorded again: replaced
    record_stage(tmp_path, "stages", "nan", [{"arch": keys[0], "accuracy": float("nan")}])  # NaN is stored as null
    assert read_stage(tmp_path, "stages", "nan") == [{"arch": keys[0], "accuracy": None}]
    assert read_stage(tmp_path, "stages", "short_train") == [{**short[0], "epochs": 9}, {**short[1], "accuracy": 0.25,
                                                                                       "epochs": 1}]
    assert read_stage(tmp_path, "stages", "final") == [{"arch": keys[0], "val_accuracy": 0.6, "test_accuracy": 0.55,
                                                        "seconds": 12.5}]
    assert journal_study(tmp_path, "stages").user_attrs[f"final:{keys[0]}"]["test_accuracy"] == 0.55


@pytest.mark.parametrize("run_id, stage, rows, message", [
    ("stages", "a:b", [], r"stage must be a non-empty string without ':', got 'a:b'"),
    ("stages", "", [], "stage must be a non-empty string"),
    ("stages", "final", [{"accuracy": 0.5}], r"rows\[0\] of stage 'final' must be a dict with an `arch` key"),
    ("stages", "final", [{"arch": "k", "curve": [0.1, float("nan")]}], r"must hold JSON values \(no NaN\)"),
    ("stages", "final", [{"arch": "k", "when": object()}], "must hold JSON values"),
    ("other", "final", [], r"holds no study 'other'; studies: \['stages'\]"),
])
def test_record_stage_bad_input(trained, pool, tmp_path, run_id, stage, rows, message):
    with pytest.raises(ConfigError, match="study.journal does not exist"):
        record_stage(tmp_path, "stages", "final", [])
    search(trained, pool, tmp_path, SearchConfig(trials=2, batch_size=2, top_k=0, run_id="stages"), progress=False)
    with pytest.raises(ConfigError, match=message):
        record_stage(tmp_path, run_id, stage, rows)


# --- the depth rule reaches the pool, and run.json records it -----------------------------------
def pool_args(depth_rule):
    return argparse.Namespace(actors=1, actor_cpus=0.5, gpu=False, calib_images=64, depth_rule=depth_rule)


def test_depth_rule_option_flows_to_the_pool_and_into_run_json(trained, pool, tmp_path):
    from raynas.cli.calibrate_cmd import pool_config

    space = trained.space
    assert pool_config(pool_args(None), 0, space).indicator == {"depth_rule": "mean"}  # tiny has elastic depth
    assert pool_config(pool_args("sum"), 0, space).indicator == {"depth_rule": "sum"}
    assert pool_config(pool_args(None), 0).indicator == {}  # no space: the indicator's own default
    with pytest.raises(ConfigError, match=r"unknown depth_rule 'median'; valid depth rules: \['sum', 'mean'\]"):
        pool_config(pool_args("median"), 0, space)
    archs = [space.sample(i) for i in range(20)]
    with EvaluatorPool(trained, None, pool_config(pool_args(None), 0, space)) as mean_pool:
        by_mean = [r["bn_score"] for r in mean_pool.score(archs)]
        config = SearchConfig(trials=4, batch_size=4, top_k=0, run_id="rule")
        search(trained, mean_pool, tmp_path, config, progress=False)
    by_sum = [r["bn_score"] for r in pool.score(archs)]
    assert by_mean == pytest.approx(list(BNIndicator(depth_rule="mean").fit(trained.supernet).score(archs)))
    assert by_sum == pytest.approx(list(BNIndicator(depth_rule="sum").fit(trained.supernet).score(archs)))
    assert by_mean != pytest.approx(by_sum)
    assert read_run_metadata(tmp_path)["search"]["depth_rule"] == "mean"
    with pytest.raises(ConfigError, match=r"scored with depth_rule='mean'; resuming it with depth_rule='sum' would mix"):
        search(trained, pool, tmp_path, SearchConfig(trials=8, batch_size=4, top_k=0, run_id="rule"), progress=False)
    search(trained, pool, tmp_path, SearchConfig(trials=2, batch_size=2, top_k=0, run_id="fresh"), progress=False)
    assert read_run_metadata(tmp_path)["search"]["depth_rule"] == "sum"


def test_score_command_defaults_to_the_space_depth_rule(trained, tmp_path, capsys):
    from raynas.cli import main

    for flags, rule in (([], "mean"), (["--depth-rule", "sum"], "sum")):
        out = tmp_path / f"{rule}.parquet"
        assert main(["score", str(trained.path), "--sample", "20", "--out", str(out), *flags]) == 0
        table = pd.read_parquet(out)
        expected = BNIndicator(depth_rule=rule).fit(trained.supernet).score([trained.space.arch(k) for k in table["arch"]])
        assert table["bn_score"].tolist() == pytest.approx(list(expected))
        assert f"({rule} rule)" in capsys.readouterr().out
