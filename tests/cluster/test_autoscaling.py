"""The real Ray autoscaler on one machine: evaluator actors that do not fit add nodes; idle nodes go.

``ray.cluster_utils.AutoscalingCluster`` runs Ray's autoscaler (v1) over the fake multi-node
provider, which starts each "cloud VM" as another raylet on this machine. Its stock methods
cannot be used as they are, so ``LocalAutoscalingCluster`` keeps its constructor and replaces
the rest:

- ``_generate_config`` reads ``fake_multi_node/example.yaml``, which the ray 2.60 wheel does not
  ship (FileNotFoundError); the same base config is inlined below.
- ``start`` and ``shutdown`` run ``ray stop --force``, which kills every Ray process of this
  user on the machine, other test runs included. Here the head is a ``Cluster`` head whose
  processes are ended by pid, inside a private ``RAY_TMPDIR``; nodes the autoscaler started
  from its own process are ended by pid too if they outlive it.
- The provider joins worker nodes to ``<this host>:6379`` unless the config names the GCS
  address, so the head gets a free port and the config says which.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from collections.abc import Iterator

import pytest
import ray
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID
from ray.cluster_utils import AutoscalingCluster, Cluster

from raynas.search import EvaluatorPool, PoolConfig
from raynas.space import load_space
from raynas.train import TrainConfig, load_checkpoint, train_supernet
from tests.cluster.test_multinode import alive_node_ids, home_node, private_ray_tmpdir, wait_for

pytestmark = pytest.mark.slow

IDLE_TIMEOUT_MINUTES = 0.1  # the autoscaler takes fractional minutes: 6 s
MAX_WORKERS = 2

# ray/autoscaler/_private/fake_multi_node/example.yaml (ray-project/ray, 2.60), minus its node types
FAKE_MULTINODE_BASE = {
    "cluster_name": "fake_multinode",
    "max_workers": 8,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True},
    "available_node_types": {},
    "head_node_type": "ray.head.default",
    "auth": {},
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 0.1,
    "docker": {},
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "rsync_exclude": [],
    "rsync_filter": [],
}


class LocalAutoscalingCluster(AutoscalingCluster):
    """``AutoscalingCluster`` that leaves other Ray instances on the machine alone (see the module doc)."""

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        if autoscaler_v2:
            raise NotImplementedError("only the v1 autoscaler is set up here")
        config = copy.deepcopy(FAKE_MULTINODE_BASE)
        config["available_node_types"] = {
            **copy.deepcopy(worker_node_types),
            "ray.head.default": {"resources": dict(head_resources), "node_config": {}, "max_workers": 0},
        }
        config.update(config_kwargs)
        return config

    def start(self, folder: str) -> str:
        """Start the head (and with it the autoscaler) and return its address.

        Needs ``RAY_FAKE_CLUSTER=1`` and ``AUTOSCALER_UPDATE_INTERVAL_S`` in this process's
        environment: the autoscaler runs in a child process of the head and inherits it.
        """
        ip = ray._private.services.get_node_ip_address()
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        config = copy.deepcopy(self._config)
        config["provider"]["gcs_address"] = f"{ip}:{port}"
        path = os.path.join(folder, "autoscaling.json")
        with open(path, "w") as f:
            json.dump(config, f)
        resources = dict(self._head_resources)
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": resources.pop("CPU", 0), "num_gpus": resources.pop("GPU", 0), "resources": resources,
            "node_ip_address": ip, "gcs_server_port": port, "autoscaling_config": path, "include_dashboard": False,
            # the provider knows the head by this id, as under `RAY_FAKE_CLUSTER=1 ray start --head`
            "env_vars": {"RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID},
        })
        return self.cluster.address

    def shutdown(self) -> None:
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def autoscaling() -> Iterator[LocalAutoscalingCluster]:
    with private_ray_tmpdir(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1") as folder:
        cluster = LocalAutoscalingCluster(
            head_resources={"CPU": 1},
            worker_node_types={"cpu_node": {"resources": {"CPU": 1}, "node_config": {},
                                            "min_workers": 0, "max_workers": MAX_WORKERS}},
            max_workers=MAX_WORKERS, idle_timeout_minutes=IDLE_TIMEOUT_MINUTES,
        )
        address = cluster.start(folder)
        try:
            ray.init(address=address, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def test_actors_that_do_not_fit_add_nodes_which_go_away_once_idle(autoscaling, tmp_path):
    assert alive_node_ids() == {FAKE_HEAD_NODE_ID}
    config = TrainConfig(epochs=1, train_images=256, log_every_epoch=False)
    trained = train_supernet(load_space("tiny"), "digits", config, out_dir=tmp_path, name="as")  # in the driver
    checkpoint = load_checkpoint(trained.checkpoint)
    space = checkpoint.space
    archs = [space.sample(i) for i in range(30)]
    # three one-CPU actors, and the head has one CPU: the autoscaler must add two nodes
    with EvaluatorPool(checkpoint, None, PoolConfig(num_actors=1 + MAX_WORKERS, num_cpus=1)) as pool:
        rows = pool.score(archs, batch_size=5)
        homes = {home_node(actor, space) for actor in pool.actors}
        grown = alive_node_ids()
    assert len(grown) == 1 + MAX_WORKERS and homes == grown
    assert [r["arch"] for r in rows] == [space.key(a) for a in archs]
    assert {r["node_id"] for r in rows} == grown, "the batches did not reach every actor"
    # the actors are gone: after the idle timeout the autoscaler terminates both worker nodes
    wait_for(lambda: alive_node_ids() == {FAKE_HEAD_NODE_ID}, 120, "the idle worker nodes to be removed", every=1)
