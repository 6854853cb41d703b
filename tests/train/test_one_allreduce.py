"""One gradient all-reduce per optimiser step on 2 gloo ranks: the same update, a quarter of the bytes.

Two real processes on a localhost gloo group run ``sandwich_step`` through the training loop's own
DDP wrapping (``data_parallel``), once per ``grad_sync``; one process runs the same steps on both
ranks' micro-batches as the reference.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raynas.data import load_data, to_model_input
from raynas.space import load_space
from raynas.supernet import build_supernet
from raynas.train import TrainConfig, sandwich_members, sandwich_step
from raynas.train.loop import AllreduceCounter, data_parallel
from raynas.train.modes import configure_trainable, make_optimizer, zero_init_residual_gamma

WORLD, STEPS, BATCH = 2, 2, 16
SETUPS = [(mode, sync) for mode in ("bn_only", "full") for sync in ("step", "member")]


def config_for(mode: str, sync: str = "step") -> TrainConfig:
    return TrainConfig(mode=mode, grad_sync=sync, lr=0.1, num_random=2)


def fresh_model(config: TrainConfig) -> torch.nn.Module:
    net = build_supernet(load_space("tiny"), 10, 1, seed=config.seed, bn_layout=config.bn_layout)
    if config.mode == "full":
        zero_init_residual_gamma(net)
    return net


def train(model: torch.nn.Module, config: TrainConfig, shards, to_input, wrap=lambda model: model) -> torch.nn.Module:
    """``STEPS`` sandwich steps; ``shards[step]`` is the list of micro-batches of that step.

    ``wrap`` comes after ``configure_trainable``, as in the training loop: DDP buckets only the
    parameters that need a gradient when it is built.
    """
    configure_trainable(model, config)
    optimizer = make_optimizer(model, config)
    net = wrap(model)
    space = load_space("tiny")
    for step in range(STEPS):
        members = sandwich_members(space, config.seed, step, config.num_random)
        sandwich_step(net, members, shards[step], to_input, optimizer, config, step)
    return model


def rank_main(rank: int, store: str, batches, to_input, out: str) -> None:
    """One rank: every setup through DDP on this rank's batches; saves parameters and counted bytes."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    results = {}
    for mode, sync in SETUPS:
        config = config_for(mode, sync)
        model, counter = fresh_model(config), AllreduceCounter()
        train(model, config, [[batches[s][rank]] for s in range(STEPS)], to_input, partial(data_parallel, counter=counter))
        trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        results[mode, sync] = {"params": dict(model.named_parameters()), "bytes": counter.bytes, "trainable": trainable}
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def digits_batches():
    """batches[step][rank]: distinct digits images per step and rank, and the input transform."""
    data = load_data("digits")
    images, labels = data.train.images, data.train.labels
    batches = [[(images[i:i + BATCH], labels[i:i + BATCH]) for i in (BATCH * (WORLD * s + r) for r in range(WORLD))]
               for s in range(STEPS)]
    return batches, partial(_to_input, mean=data.mean, std=data.std)


def _to_input(images: torch.Tensor, resolution: int, mean, std) -> torch.Tensor:
    return to_model_input(images, mean, std, resolution)


@pytest.fixture(scope="module")
def ranks(digits_batches, tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_allreduce")
    batches, to_input = digits_batches
    mp.spawn(rank_main, args=(str(folder / "store"), batches, to_input, str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_the_last_child_leaves_parameters_unused_that_earlier_ones_trained():
    """The hard case for skipping all but the last all-reduce: DDP must still average those."""
    space, config = load_space("tiny"), config_for("full")
    unused = []
    for step in range(STEPS):
        net = fresh_model(config)
        last = sandwich_members(space, config.seed, step, config.num_random)[-1]
        net(torch.zeros(2, 1, 8, 8), last.arch).sum().backward()
        unused += [name for name, p in net.named_parameters() if p.grad is None]
    assert unused, "every step's last child uses every parameter: the test would not cover the hard case"


@pytest.mark.parametrize("mode, sync", SETUPS)
def test_two_ranks_match_one_process_on_both_micro_batches(ranks, digits_batches, mode, sync):
    batches, to_input = digits_batches
    config = config_for(mode)
    reference = dict(train(fresh_model(config), config, batches, to_input).named_parameters())
    for rank, results in enumerate(ranks):
        params = results[mode, sync]["params"]
        worst = max((params[name] - value).abs().max().item() for name, value in reference.items())
        assert worst <= 1e-5, f"rank {rank}: {worst}"


@pytest.mark.parametrize("mode, sync", SETUPS)
def test_step_sync_all_reduces_the_trainable_parameters_once_per_step(ranks, mode, sync):
    passes_per_step = 1 if sync == "step" else 2 + config_for(mode).num_random
    for results in ranks:
        counted = results[mode, sync]
        assert counted["bytes"] == STEPS * passes_per_step * counted["trainable"]
