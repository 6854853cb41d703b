"""Multi-objective search over the evaluator pool: samplers, constraints, Parquet, resume."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from raynas.errors import ConfigError
from raynas.search.samplers import SAMPLERS
from raynas.search.study import SearchConfig, search


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
