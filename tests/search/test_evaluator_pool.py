"""Evaluator actors built from shared weights: same answers as in-process, robust to being killed.

Resource and death tests guard against hangs with ``pytest.mark.timeout``: before these checks
the pool waited forever for actors the cluster could not hold, and spun forever on a dead actor.
"""

import os
import re
import signal
import subprocess
import sys

import optuna
import pytest
import ray
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from raynas.cli import main
from raynas.data import load_data
from raynas.errors import ConfigError, EvaluationError
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.results import ResultStore
from raynas.results.report import RESULTS_DIR
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.study import JOURNAL_FILE, SearchConfig, search
from raynas.space import load_space
from raynas.train import TrainConfig, load_checkpoint, train_supernet

CALIB = CalibrationConfig(images=64, batch_size=64)


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory):
    config = TrainConfig(epochs=1, train_images=256, log_every_epoch=False)
    result = train_supernet(load_space("tiny"), "digits", config, out_dir=tmp_path_factory.mktemp("ev"), name="ev")
    return load_checkpoint(result.checkpoint), load_data("digits")


def test_scores_and_calibration_match_in_process(trained):
    checkpoint, data = trained
    space = checkpoint.space
    archs = [space.sample(i) for i in range(12)]
    with EvaluatorPool(checkpoint, data, PoolConfig(num_actors=2, calibration=CALIB, num_cpus=0.5)) as pool:
        scored = pool.score(archs, batch_size=5)
        calibrated = pool.calibrate_and_evaluate(archs[:4], batch_size=2)
    expected = BNIndicator().fit(checkpoint.supernet).score(archs)
    assert [r["arch"] for r in scored] == [space.key(a) for a in archs]
    assert [r["bn_score"] for r in scored] == pytest.approx(list(expected), rel=1e-12)
    for arch, row in zip(archs[:4], calibrated):
        local = calibrate_and_evaluate(checkpoint.supernet, arch, data.calib, data.val, data.mean, data.std, CALIB)
        assert row["status"] == "ok" and row["calib_images"] == 64
        assert row["accuracy"] == pytest.approx(local["accuracy"]) and row["loss"] == pytest.approx(local["loss"])


def test_failed_evaluation_is_recorded_not_dropped(trained):
    checkpoint, data = trained
    space = checkpoint.space
    good = space.min()
    with EvaluatorPool(checkpoint, data, PoolConfig(num_actors=1, calibration=CALIB, num_cpus=0.5)) as pool:
        ref = pool.actors[0].calibrate_and_evaluate.remote([good.to_dict(), {"resolution": 99}])
        rows = ray.get(ref)
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "not a valid choice" in rows[1]["error"]


@pytest.mark.slow
def test_killed_actor_restarts_and_no_result_is_lost_or_duplicated(trained):
    checkpoint, data = trained
    space = checkpoint.space
    archs = [space.sample(100 + i) for i in range(24)]
    with EvaluatorPool(checkpoint, data, PoolConfig(num_actors=2, calibration=CALIB, num_cpus=0.5)) as pool:
        pids = ray.get([a.pid.remote() for a in pool.actors])
        victim = pool.actors[0]

        @ray.remote(num_cpus=0)
        def kill_soon(pid: int) -> None:
            import os
            import signal
            import time

            time.sleep(1.0)
            os.kill(pid, signal.SIGKILL)

        killer = kill_soon.remote(pids[0])
        rows = pool.calibrate_and_evaluate(archs, batch_size=2)
        ray.get(killer)
        new_pid = ray.get(victim.pid.remote())
    assert new_pid != pids[0], "the killed actor was not restarted"
    assert [r["arch"] for r in rows] == [space.key(a) for a in archs]
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.slow
def test_memory_stays_flat_over_1000_evaluations(trained):
    checkpoint, data = trained
    space = checkpoint.space
    small = CalibrationConfig(images=16, batch_size=16, eval_batch_size=64)
    with EvaluatorPool(checkpoint, data, PoolConfig(num_actors=1, calibration=small, num_cpus=0.5)) as pool:
        pool.calibrate_and_evaluate([space.sample(i) for i in range(100)], batch_size=50)  # warm up
        before = pool.memory_mb()[0]
        rows = pool.calibrate_and_evaluate([space.sample(1000 + i) for i in range(1000)], batch_size=50)
        after = pool.memory_mb()[0]
    assert len(rows) == 1000 and all(r["status"] == "ok" for r in rows)
    assert after - before < 25, f"RSS grew from {before:.0f} MB to {after:.0f} MB over 1,000 evaluations"


# --- resources: refused on a local instance, waited for on a joined cluster -----------------------
@pytest.mark.timeout(120)
def test_more_actors_than_cpus_are_refused_up_front_on_a_local_instance(trained, tmp_path, capsys):
    checkpoint, _ = trained
    with pytest.raises(ConfigError, match=r"4 evaluator actors x 1 CPU need 4 CPUs, but the Ray cluster has 2; "
                                          r"lower --actors or add nodes"):
        EvaluatorPool(checkpoint, None, PoolConfig(num_actors=4, num_cpus=1)).score([checkpoint.space.min()])
    assert main(["search", str(checkpoint.path), "--actors", "4", "--trials", "4", "--out", str(tmp_path)]) == 2
    assert "4 evaluator actors x 1 CPU need 4 CPUs" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_a_joined_cluster_is_waited_for_with_progress_then_a_clear_error(trained, tmp_path):
    """A second driver joins this module's instance by address, as `raynas search --address` does."""
    checkpoint, _ = trained
    address = ray.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "raynas", "search", str(checkpoint.path), "--actors", "4",
                           "--address", address, "--wait-timeout", "5", "--trials", "4", "--out", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=150, env=env)
    assert done.returncode == 2, done.stderr
    assert re.search(r"\[raynas\] waiting for 4 evaluator actors: 2 of 4 CPUs available, \d of 4 started; "
                     r"giving up in \d+ s", done.stderr), done.stderr
    assert re.search(r"error: \d of 4 evaluator actors started in 5 s: 4 evaluator actors x 1 CPU need 4 CPUs, "
                     r"but the Ray cluster has 2; lower --actors or add nodes", done.stderr), done.stderr


# --- actors gone for good ---------------------------------------------------------------------
def kill_actor_process(actor) -> int:
    """SIGKILL an actor's process by the pid it reports (with max_restarts=0 it stays dead)."""
    pid = ray.get(actor.pid.remote())
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.timeout(120)
def test_an_actor_gone_for_good_leaves_the_pool_and_the_others_finish(trained):
    checkpoint, _ = trained
    archs = [checkpoint.space.sample(i) for i in range(12)]
    with EvaluatorPool(checkpoint, None, PoolConfig(num_actors=2, num_cpus=0.5, max_restarts=0)) as pool:
        kill_actor_process(pool.actors[0])
        rows = pool.score(archs, batch_size=3)
        left = len(pool.actors)
    assert left == 1
    assert [r["arch"] for r in rows] == [checkpoint.space.key(a) for a in archs]
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.timeout(120)
def test_no_actor_left_is_an_error_naming_the_batches_not_a_busy_loop(trained):
    checkpoint, _ = trained
    archs = [checkpoint.space.sample(i) for i in range(10)]
    with EvaluatorPool(checkpoint, None, PoolConfig(num_actors=1, num_cpus=0.5, max_restarts=0)) as pool:
        kill_actor_process(pool.actors[0])
        with pytest.raises(EvaluationError) as caught:
            pool.score(archs, batch_size=4)
    message = str(caught.value)
    assert message.startswith("no evaluator actor is left: 1 of 1 died for good (max_restarts=0), so score of "
                              "3 of 3 batches did not run: batch 0 (archs 0-3), batch 1 (archs 4-7), "
                              "batch 2 (archs 8-9); the first holds "), message
    assert checkpoint.space.key(archs[0]) in message and "last cause: ActorDiedError" in message


class KillingPool(EvaluatorPool):
    """A pool whose every actor is killed (by pid, for good) just before its ``kill_at``-th ``score`` call."""

    def __init__(self, *args, kill_at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kill_at, self.calls = kill_at, 0

    def score(self, archs, batch_size=4096):
        self.calls += 1
        if self.calls == self.kill_at:
            for actor in self.actors:
                kill_actor_process(actor)
        return super().score(archs, batch_size)


@pytest.mark.timeout(240)
def test_a_search_whose_actors_all_die_keeps_earlier_batches_and_resumes(trained, tmp_path):
    checkpoint, _ = trained
    config = SearchConfig(trials=30, batch_size=10, top_k=0, run_id="die", sampler="random", seed=3)
    dying = PoolConfig(num_actors=2, num_cpus=0.5, max_restarts=0)
    with KillingPool(checkpoint, None, dying, kill_at=3) as pool, pytest.raises(EvaluationError, match="score of"):
        search(checkpoint, pool, tmp_path, config, progress=False)
    assert pool.calls == 3
    assert sorted(scored_trials(tmp_path)) == list(range(20)), "batches 1-2 must be stored, each row once"
    assert journal_trials(tmp_path, "die") == 20
    with EvaluatorPool(checkpoint, None, PoolConfig(num_actors=2, num_cpus=0.5)) as pool:
        result = search(checkpoint, pool, tmp_path, config, progress=False)
    assert sorted(scored_trials(tmp_path)) == list(range(30))
    assert journal_trials(tmp_path, "die") == len(result.study.trials) == 30


def scored_trials(run_dir) -> list[int]:
    """The trial numbers of the BN-score rows stored in ``run_dir`` (one entry per row)."""
    table = ResultStore(run_dir / RESULTS_DIR, load_space("tiny")).to_pandas()
    return table.loc[table["evaluator"] == "bn_score", "trial"].tolist()


def journal_trials(run_dir, run_id: str) -> int:
    storage = JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    return len(optuna.load_study(study_name=run_id, storage=storage).trials)
