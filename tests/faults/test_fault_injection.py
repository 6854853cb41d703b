"""Fault injection: kill the search driver, evaluator actors, a training worker, whole nodes; check what survives.

Every kill point is drawn from a seeded ``random.Random``, so a failure names a reproducible
schedule. After each fault the invariants of a run are checked: exactly one row per trial and
evaluator, no row of another run, and (once finished) as many journal trials as Parquet trials.

The Ray world is the one of tests/cluster/test_multinode.py (see conftest.py): a ``Cluster``
whose head advertises no CPU, one-CPU worker nodes, all under a private ``RAY_TMPDIR``. Search
drivers run as subprocesses that join it by address, as on a real cluster, so killing a driver
(by its pid) takes down its job and its actors but not the cluster.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from raynas.data import load_data
from raynas.estimate.calibration import CalibrationConfig
from raynas.results import ResultStore
from raynas.results.report import RESULTS_DIR
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.study import JOURNAL_FILE, SearchConfig, search
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, train_supernet
from raynas.train.checkpoint import read_state
from tests.cluster.test_multinode import home_node, resize, wait_for

pytestmark = pytest.mark.slow

SEED = 13
CALIB = CalibrationConfig(images=32, batch_size=32)


# --- invariants ----------------------------------------------------------------------------------
def stored_rows(run_dir: Path, run_id: str | None = None) -> pd.DataFrame:
    table = ResultStore(run_dir / RESULTS_DIR, load_space("tiny")).to_pandas()
    return table if run_id is None else table[table["run_id"] == run_id]


def journal_finished(run_dir: Path, run_id: str) -> int:
    storage = JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    if run_id not in optuna.get_all_study_names(storage):
        return 0
    trials = optuna.load_study(study_name=run_id, storage=storage).get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    return len(trials)


def check_rows(run_dir: Path, run_id: str, evaluator: str, trials: int | None = None) -> pd.DataFrame:
    """The stored trials are 0..n-1, each with one row of ``evaluator`` (batches are written in
    order, so a gap is a lost row); with ``trials``, n is that and every row holds a result."""
    rows = stored_rows(run_dir, run_id)
    rows = rows[rows["evaluator"] == evaluator]
    counts = rows.groupby("trial").size()
    assert (counts == 1).all(), f"trials with more than one {evaluator} row: {counts[counts > 1].to_dict()}"
    assert sorted(rows["trial"]) == list(range(len(rows))), f"a trial below {rows['trial'].max()} has no row"
    if trials is not None:
        assert len(rows) == trials, f"{len(rows)} of {trials} trials have a row"
        assert rows["status"].isin(["ok", "duplicate"]).all(), rows.loc[~rows["status"].isin(["ok", "duplicate"])]
    return rows


# --- processes ------------------------------------------------------------------------------------
def kill_pid(pid: int) -> None:
    """SIGKILL one process this test started or that Ray started for it, by its recorded pid."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended on its own in the meantime
        pass


def start_driver(checkpoint: Path, run_dir: Path, address: str, log: Path, trials: int) -> subprocess.Popen:
    """``raynas search`` as a separate driver process that joins the cluster at ``address``."""
    command = [sys.executable, "-m", "raynas", "search", str(checkpoint), "--trials", str(trials),
               "--search-batch", "10", "--top-k", "0", "--actors", "1", "--actor-cpus", "0.5",
               "--run-id", "main", "--address", address, "--out", str(run_dir)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(log, "a") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def parts(run_dir: Path) -> int:
    return len(ResultStore(run_dir / RESULTS_DIR, load_space("tiny")).parts())


# --- the search driver ----------------------------------------------------------------------------
@pytest.mark.timeout(420)
def test_a_killed_search_driver_resumes_without_losing_duplicating_or_mixing_rows(cluster, trained, tmp_path):
    resize(cluster, 2)
    run_dir, log, trials = tmp_path / "run", tmp_path / "driver.log", 300
    # another run in the same folder: its rows must stay as they are, and never count as ours
    with EvaluatorPool(trained, None, PoolConfig(num_actors=1, num_cpus=0.5)) as pool:
        search(trained, pool, run_dir, SearchConfig(trials=20, batch_size=10, top_k=0, run_id="other"), progress=False)
    other = stored_rows(run_dir, "other").sort_values("trial").reset_index(drop=True)
    rng, kills = random.Random(SEED), []
    for _ in range(3):
        # Kill a seeded delay after a seeded number of new part files: inside a batch, between its
        # part file and its journal entry, or (batches are fast) a few batches later.
        target = parts(run_dir) + rng.randint(1, 4)
        delay = rng.uniform(0.0, 0.1)
        driver = start_driver(trained.path, run_dir, cluster.address, log, trials)
        try:
            wait_for(lambda target=target, driver=driver: parts(run_dir) >= target or driver.poll() is not None,
                     240, f"part file {target}", 0.02)
            time.sleep(delay)
        finally:
            kill_pid(driver.pid)
            driver.wait(timeout=60)
        assert driver.returncode == -signal.SIGKILL, f"the driver ended by itself before its kill; see {log}"
        kills.append(len(stored_rows(run_dir, "main")))
        check_rows(run_dir, "main", "bn_score")
        assert journal_finished(run_dir, "main") <= kills[-1], "the journal holds a trial Parquet lacks"
    assert kills == sorted(kills), f"rows at each kill: {kills}"
    driver = start_driver(trained.path, run_dir, cluster.address, log, trials)
    assert driver.wait(timeout=240) == 0, log.read_text()[-3000:]
    check_rows(run_dir, "main", "bn_score", trials)
    assert journal_finished(run_dir, "main") == trials
    assert set(stored_rows(run_dir)["run_id"]) == {"main", "other"}
    pd.testing.assert_frame_equal(stored_rows(run_dir, "other").sort_values("trial").reset_index(drop=True), other)


# --- evaluator actors -----------------------------------------------------------------------------
class Delayed(threading.Thread):
    """Runs ``action(*args)`` after ``delay`` seconds; ``finish`` joins it and re-raises its error."""

    def __init__(self, delay: float, action, *args) -> None:
        super().__init__(daemon=True)
        self.delay, self.action, self.args, self.error = delay, action, args, None

    def run(self) -> None:
        time.sleep(self.delay)
        try:
            self.action(*self.args)
        except BaseException as err:  # re-raised by finish()
            self.error = err

    def finish(self) -> None:
        self.join(timeout=120)
        assert not self.is_alive(), f"{self.action.__name__} did not return"
        if self.error is not None:
            raise self.error


class ChaosPool(EvaluatorPool):
    """Each call, one actor (a seeded choice) is SIGKILLed by its pid a seeded delay into the call."""

    def __init__(self, *args, rng: random.Random, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rng, self.killed = rng, []

    def calibrate_and_evaluate(self, archs, batch_size=4):
        pid = self.rng.choice(ray.get([actor.pid.remote() for actor in self.actors]))
        fault = Delayed(self.rng.uniform(0.05, 0.6), kill_pid, pid)
        fault.start()
        try:
            return super().calibrate_and_evaluate(archs, batch_size)
        finally:
            fault.finish()
            self.killed.append(pid)


@pytest.mark.timeout(300)
def test_evaluator_actors_killed_mid_search_lose_and_duplicate_nothing(cluster, trained, tmp_path):
    resize(cluster, 2)
    trials, batch = 24, 8
    config = PoolConfig(num_actors=2, num_cpus=0.5, calibration=CALIB)
    with ChaosPool(trained, load_data("digits"), config, rng=random.Random(SEED + 1)) as pool:
        search(trained, pool, tmp_path, SearchConfig(objectives=("accuracy", "flops"), trials=trials,
                                                     batch_size=batch, top_k=0, run_id="chaos"), progress=False)
        alive = ray.get([actor.pid.remote() for actor in pool.actors])
    assert len(pool.killed) == trials // batch and not set(pool.killed) & set(alive), "an actor was not killed"
    check_rows(tmp_path, "chaos", "calibrate", trials)
    assert journal_finished(tmp_path, "chaos") == trials


# --- Ray Train workers ----------------------------------------------------------------------------
TRAIN = TrainConfig(epochs=3, batch_size=32, lr=0.1, train_images=384, log_every_epoch=False)


@pytest.mark.timeout(480)
def test_a_training_worker_killed_at_a_random_epoch_ends_with_the_uninterrupted_weights(cluster, tmp_path):
    resize(cluster, 2)  # one worker per node
    space = load_space("tiny")
    straight = read_state(train_supernet(space, "digits", TRAIN, Scaling(num_workers=2), out_dir=tmp_path,
                                         name="straight").checkpoint)["model"]
    points = [(rank, epoch) for rank in range(2) for epoch in range(1, TRAIN.epochs)]
    for i, (rank, epoch) in enumerate(random.Random(SEED + 2).sample(points, 2)):
        marker = tmp_path / f"killed-{i}"
        result = train_supernet(space, "digits", TRAIN, Scaling(num_workers=2), out_dir=tmp_path,
                                name=f"killed-{i}", max_failures=1,
                                fault={"kind": "kill", "rank": rank, "after_epoch": epoch, "marker": str(marker)})
        assert marker.exists(), f"rank {rank} was never killed after epoch {epoch}"
        assert [m["epoch"] for m in result.metrics] == list(range(1, TRAIN.epochs + 1))
        resumed = read_state(result.checkpoint)["model"]
        assert resumed.keys() == straight.keys()
        for key, value in straight.items():
            assert torch.equal(resumed[key], value), f"{key} differs after killing rank {rank} after epoch {epoch}"


# --- nodes ----------------------------------------------------------------------------------------
class NodeKillingPool(EvaluatorPool):
    """Each call, the node of one actor (a seeded choice) is removed a seeded delay into the call.

    A fresh node joins after the call, so the next actor to restart has somewhere to go. It joins
    from this thread: ``Cluster.add_node`` installs signal handlers, which only the main thread may.
    """

    def __init__(self, *args, rng: random.Random, cluster, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rng, self.cluster, self.removed = rng, cluster, []

    def calibrate_and_evaluate(self, archs, batch_size=4):
        home = home_node(self.rng.choice(self.actors), self.checkpoint.space)
        node = next(n for n in self.cluster.worker_nodes if n.node_id == home)
        fault = Delayed(self.rng.uniform(0.05, 0.6), self.cluster.remove_node, node)
        fault.start()
        try:
            return super().calibrate_and_evaluate(archs, batch_size)
        finally:
            fault.finish()
            self.removed.append(home)
            self.cluster.add_node(num_cpus=1)


@pytest.mark.timeout(300)
def test_removing_nodes_that_hold_actors_mid_search_loses_and_duplicates_nothing(cluster, trained, tmp_path):
    resize(cluster, 3)  # two actors, one node each, and a free node to restart on
    trials, batch = 16, 8
    config = PoolConfig(num_actors=2, num_cpus=1, calibration=CALIB)
    with NodeKillingPool(trained, load_data("digits"), config, rng=random.Random(SEED + 3), cluster=cluster) as pool:
        search(trained, pool, tmp_path, SearchConfig(objectives=("accuracy", "flops"), trials=trials,
                                                     batch_size=batch, top_k=0, run_id="nodes"), progress=False)
        homes = {home_node(actor, trained.space) for actor in pool.actors}
    assert len(pool.removed) == trials // batch and not homes & set(pool.removed)
    rows = check_rows(tmp_path, "nodes", "calibrate", trials)
    assert journal_finished(tmp_path, "nodes") == trials
    assert rows["accuracy"].notna().all()


# --- a node that joins late -------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_a_pool_on_a_joined_cluster_waits_for_a_node_that_joins_late(cluster, trained, capsys):
    resize(cluster, 1)
    outcome: dict = {}

    def start() -> None:
        try:
            outcome["pool"] = EvaluatorPool(trained, None, PoolConfig(num_actors=2, num_cpus=1, wait_timeout=150))
        except BaseException as err:  # re-raised below
            outcome["error"] = err

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    line = "[raynas] waiting for 2 evaluator actors: 1 of 2 CPUs available, 0 of 2 started"
    seen: list[str] = []  # the raynas logger writes warnings to stderr

    def shown() -> str:
        seen.append(capsys.readouterr().err)
        return "".join(seen)

    wait_for(lambda: line in shown() or not starter.is_alive(), 120, "the waiting line")
    cluster.add_node(num_cpus=1)  # from the main thread, see NodeKillingPool
    starter.join(timeout=150)
    if "error" in outcome:
        raise outcome["error"]
    assert line in shown()
    with outcome["pool"] as pool:
        rows = pool.score([trained.space.sample(i) for i in range(6)], batch_size=3)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
