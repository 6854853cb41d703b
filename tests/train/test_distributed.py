"""Data-parallel training on 2 Ray Train workers (gloo): equivalence and fault tolerance."""

import pytest
import torch

from raynas.data import load_data
from raynas.space import load_space
from raynas.supernet import BATCHNORMS, build_supernet
from raynas.train import Scaling, TrainConfig, sandwich_members, sandwich_step, train_supernet
from raynas.train.checkpoint import read_state
from raynas.train.data_feed import ShardFeed, pack_splits
from raynas.train.modes import configure_trainable, make_optimizer, make_scheduler

pytestmark = pytest.mark.slow

# A moderate learning rate: DDP sums the two shards' gradients in another order than one process
# does, and a high rate amplifies that rounding over the run.
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.1, train_images=384, log_every_epoch=False)
TWO = Scaling(num_workers=2)


@pytest.fixture(scope="module")
def two_worker_run(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return train_supernet(load_space("tiny"), "digits", CONFIG, TWO, out_dir=out, name="ddp")


def single_process_reference(config: TrainConfig, world: int = 2) -> dict[str, torch.Tensor]:
    """One process, the same global batches: each shard's gradient averaged, as DDP does."""
    space = load_space("tiny")
    packed = pack_splits(load_data("digits", seed=config.seed), config.train_images)
    feeds = [ShardFeed.from_packed(packed, config.batch_size, r, world, config.seed, config.augment, torch.device("cpu"))
             for r in range(world)]
    info = packed["info"]
    net = build_supernet(space, info["num_classes"], info["in_channels"], seed=config.seed, bn_layout=config.bn_layout)
    configure_trainable(net, config)
    optimizer = make_optimizer(net, config)
    scheduler = make_scheduler(optimizer, feeds[0].steps_per_epoch(), config)
    step = 0
    for epoch in range(config.epochs):
        shards = [feed.epoch(epoch, step) for feed in feeds]
        for parts in zip(*shards):
            step = parts[0][0]
            members = sandwich_members(space, config.seed, step, config.num_random)
            sandwich_step(net, members, [(x, y) for _, x, y in parts], feeds[0].to_input, optimizer, config, step)
            scheduler.step()
        step += 1
    return net.state_dict()


def bn_parameters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    net = build_supernet(load_space("tiny"), 10, 1)
    names = {f"{n}.{p}" for n, m in net.named_modules() if isinstance(m, BATCHNORMS) for p in ("weight", "bias")}
    return {k: v for k, v in state.items() if k in names}


def test_two_workers_match_one_process_on_the_same_global_batches(two_worker_run):
    ddp = bn_parameters(read_state(two_worker_run.checkpoint)["model"])
    reference = bn_parameters(single_process_reference(CONFIG))
    assert ddp.keys() == reference.keys() and ddp
    worst = max((ddp[k] - reference[k]).abs().max().item() for k in ddp)
    assert worst <= 1e-5, worst
    metrics = two_worker_run.metrics[-1]
    assert metrics["allreduce_bytes_per_step"] > 0
    # BN-only DDP all-reduces BN parameters only, once per optimiser step (grad_sync="step").
    assert metrics["allreduce_bytes_per_step"] == metrics["trainable_bytes"]


def test_killed_worker_restarts_from_checkpoint_and_ends_the_same(two_worker_run, tmp_path):
    marker = tmp_path / "killed"
    result = train_supernet(
        load_space("tiny"), "digits", CONFIG, TWO, out_dir=tmp_path, name="killed", max_failures=1,
        fault={"kind": "kill", "rank": 1, "after_epoch": 1, "marker": str(marker)},
    )
    assert marker.exists(), "the fault was never injected"
    assert [m["epoch"] for m in result.metrics] == [1, 2]
    restarted = read_state(result.checkpoint)["model"]
    straight = read_state(two_worker_run.checkpoint)["model"]
    for key, value in bn_parameters(straight).items():
        assert torch.allclose(restarted[key], value, atol=1e-6), key
