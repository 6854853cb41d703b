"""Evaluator actors built from shared weights: same answers as in-process, robust to being killed."""

import pytest
import ray

from raynas.data import load_data
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.search import EvaluatorPool, PoolConfig
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
