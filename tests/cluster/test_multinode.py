"""Real multi-node behaviour on one machine: ``ray.cluster_utils.Cluster`` starts one raylet per node.

The head advertises ``CPU: 0``, as the shipped cluster configs do (cluster/README.md): it runs
the driver, the Ray Train controller and the object store that holds the supernet weights, and
all compute lands on worker nodes. So removing a worker node never takes the driver with it,
and with ``n`` one-CPU worker nodes the placement of ``n`` one-CPU workers is known.

The whole Ray session lives under a private ``RAY_TMPDIR``: ``Cluster`` writes the address of
the cluster it starts into ``$RAY_TMPDIR/ray/ray_current_cluster``, and any ``ray.init()``
without an address on this machine would otherwise join it instead of starting its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import ray
from ray.cluster_utils import Cluster

from raynas.data import load_data
from raynas.estimate.calibration import CalibrationConfig
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.study import SearchConfig, search
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet
from raynas.train.checkpoint import read_meta
from raynas.train.loop import PROGRESS_FILE

pytestmark = pytest.mark.slow


# --- a private Ray world -------------------------------------------------------------------
@contextlib.contextmanager
def private_ray_tmpdir(**env: str) -> Iterator[str]:
    """Point ``RAY_TMPDIR`` (and ``env``) at a fresh short folder; on exit, end what was started there.

    The folder is short on purpose: Ray's Unix sockets live under it (a path limit of 107 bytes).
    Every Ray process started for this world names the folder in its command line, so after the
    cluster's own shutdown anything still running there (a node that an autoscaler started from
    its own process, say) is ended by its pid.
    """
    root = tempfile.mkdtemp(prefix="rn", dir="/tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        patch.setenv("RAY_TMPDIR", root)
        for key, value in env.items():
            patch.setenv(key, value)
        try:
            yield root
        finally:
            end_processes_under(root)
            shutil.rmtree(root, ignore_errors=True)


def end_processes_under(root: str) -> list[int]:
    """SIGKILL the processes (other than this one) whose command line names ``root``."""
    ended = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if root in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                ended.append(int(entry.name))
    return ended


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def alive_node_ids() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


# --- the cluster ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with private_ray_tmpdir():
        started = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        try:
            for _ in range(2):
                started.add_node(num_cpus=1)
            ray.init(address=started.address, log_to_driver=False)
            assert ray.get_runtime_context().get_node_id() == started.head_node.node_id
            yield started
        finally:
            ray.shutdown()
            started.shutdown()


def resize(cluster: Cluster, workers: int) -> list:
    """Exactly ``workers`` one-CPU worker nodes, all registered; returns them."""
    while len(cluster.worker_nodes) < workers:
        cluster.add_node(num_cpus=1)
    while len(cluster.worker_nodes) > workers:
        cluster.remove_node(next(iter(cluster.worker_nodes)))
    cluster.wait_for_nodes()
    wait_for(lambda: ray.cluster_resources().get("CPU", 0) == workers, 30, f"{workers} CPUs in the cluster")
    wait_for(lambda: ray.available_resources().get("CPU", 0) == workers, 30, "every CPU to be free")
    return list(cluster.worker_nodes)


@pytest.fixture(scope="module")
def trained(cluster, tmp_path_factory):
    """A small supernet, trained in the driver (``num_workers=0``) on the head."""
    config = TrainConfig(epochs=1, train_images=256, log_every_epoch=False)
    result = train_supernet(load_space("tiny"), "digits", config, out_dir=tmp_path_factory.mktemp("mn"), name="mn")
    return load_checkpoint(result.checkpoint)


def home_node(actor, space) -> str:
    """The node an evaluator actor runs on, as its own rows report it."""
    return ray.get(actor.score.remote([space.min().to_dict()]))[0]["node_id"]


# --- tests ---------------------------------------------------------------------------------
def test_evaluator_actors_spread_over_nodes(cluster, trained, tmp_path):
    workers = {node.node_id for node in resize(cluster, 2)}
    space = trained.space
    # half a CPU each: both fit on one node, so only the SPREAD strategy puts them apart
    config = PoolConfig(num_actors=2, num_cpus=0.5, calibration=CalibrationConfig(images=64))
    with EvaluatorPool(trained, load_data("digits"), config) as pool:
        homes = [home_node(actor, space) for actor in pool.actors]
        result = search(trained, pool, tmp_path, SearchConfig(trials=40, batch_size=20, top_k=8, run_id="spread"),
                        progress=False)
    assert len(set(homes)) == 2 and set(homes) <= workers
    table = result.store.to_pandas()
    calibrated = table[table["evaluator"] == "calibrate"]
    assert len(calibrated) == 8 and (calibrated["status"] == "ok").all()
    # the top-K calibrations go out in batches of 4, one to each actor
    assert set(calibrated["node_id"]) == set(homes)
    assert set(table["node_id"]) <= workers


class PausingPool(EvaluatorPool):
    """An evaluator pool whose ``score`` stops before call ``pause_at`` until ``resume`` is set."""

    def __init__(self, *args, pause_at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pause_at, self.calls = pause_at, 0
        self.paused, self.resume = threading.Event(), threading.Event()

    def score(self, archs, batch_size=4096):
        self.calls += 1
        if self.calls == self.pause_at:
            self.paused.set()
            if not self.resume.wait(timeout=300):
                raise TimeoutError("the test never resumed the search")
        return super().score(archs, batch_size)


def test_removing_a_node_mid_search_loses_and_duplicates_nothing(cluster, trained, tmp_path):
    nodes = {node.node_id: node for node in resize(cluster, 3)}  # 2 actors + a free node to restart on
    space = trained.space
    trials, batch = 300, 10
    with PausingPool(trained, None, PoolConfig(num_actors=2, num_cpus=1), pause_at=6) as pool:
        homes = [home_node(actor, space) for actor in pool.actors]
        pid = ray.get(pool.actors[0].pid.remote())
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["result"] = search(trained, pool, tmp_path, SearchConfig(trials=trials, batch_size=batch,
                                                                                top_k=0, run_id="lose"),
                                           progress=False)
            except BaseException as err:  # re-raised below
                outcome["error"] = err

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert pool.paused.wait(timeout=120), "the search never reached its sixth batch"
        # Scoring is a table lookup, so a search's batch is one pool batch and goes to actor 0:
        # remove the node that holds the actor doing the work, between two batches.
        victim = homes[0]
        cluster.remove_node(nodes[victim])
        wait_for(lambda: victim not in alive_node_ids(), 30, "the removed node to be marked dead")
        pool.resume.set()
        thread.join(timeout=300)
        assert not thread.is_alive(), "the search did not finish after the node was removed"
        if "error" in outcome:
            raise outcome["error"]
        new_pid = ray.get(pool.actors[0].pid.remote())
        moved_to = home_node(pool.actors[0], space)
    result = outcome["result"]
    assert new_pid != pid and moved_to not in (victim, homes[1]), "actor 0 was not restarted on the free node"
    table = result.store.to_pandas()
    scored = table[table["evaluator"] == "bn_score"]
    assert sorted(scored["trial"]) == list(range(trials)), "a trial is missing or has two rows"
    assert scored["status"].isin(["ok", "duplicate"]).all() and scored["bn_score"].notna().all()
    assert scored.loc[scored["status"] == "ok", "arch"].is_unique  # repeats are told, not scored again
    before, after = scored[scored["trial"] < 5 * batch], scored[scored["trial"] >= 5 * batch]
    # BN-score batches are spread over both actors; the victim served rows before and none after
    assert victim in set(before["node_id"]) and victim not in set(after["node_id"])
    assert len(result.study.trials) == trials
    assert {t.state for t in result.study.trials} == {optuna.trial.TrialState.COMPLETE}


def test_training_survives_losing_a_node_through_its_checkpoint(cluster, tmp_path):
    first, _ = resize(cluster, 2)  # one Ray Train worker per worker node: both nodes hold one
    epochs = 3
    config = TrainConfig(epochs=epochs, batch_size=32, lr=0.5, train_images=768, log_every_epoch=False)
    progress = tmp_path / "lose-node" / PROGRESS_FILE
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = train_supernet(load_space("tiny"), "digits", config, Scaling(num_workers=2),
                                               out_dir=tmp_path, name="lose-node", max_failures=1)
        except BaseException as err:  # re-raised below
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: progress.exists() and progress.read_text().count("\n") >= 1 or not thread.is_alive(), 300,
             "the first epoch's checkpoint", every=0.05)
    if "error" in outcome:
        raise outcome["error"]
    done = progress.read_text().count("\n")
    assert thread.is_alive() and done < epochs, f"training ended ({done} epochs) before a node could be removed"
    assert sorted(w["Address"]["NodeID"] for w in train_workers(cluster, "ALIVE")) \
        == sorted(node.node_id for node in cluster.worker_nodes), "the two workers are not one per worker node"
    cluster.remove_node(first)
    cluster.add_node(num_cpus=1)  # the replacement: the restarted group needs two CPUs again
    thread.join(timeout=420)
    assert not thread.is_alive(), "training did not finish after losing a node"
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    assert [m["epoch"] for m in result.metrics] == list(range(1, epochs + 1))
    assert read_meta(result.checkpoint)["epoch"] == epochs
    workers = train_workers(cluster)
    assert len(workers) >= 4, f"the worker group was not restarted: {len(workers)} worker actors"
    assert any(w["Address"]["NodeID"] == first.node_id for w in workers)


def train_workers(cluster: Cluster, state: str | None = None) -> list[dict]:
    """Ray Train's worker actors (this module's jobs only run one training), from the GCS actor table."""
    table = cluster.global_state.actor_table(None, actor_state_name=state)
    return [a for a in table.values() if a["ActorClassName"].endswith("RayTrainWorker")]
