"""Standalone training of one child in the calling process (no Ray Train).

The same pieces as the Ray Train loop (seeded init, shard feed, sandwich step with one member,
schedule), so a child trained here and one trained by ``retrain`` follow the same recipe. Used
inside Ray Tune trials (the main job's shortlist and final training, ground truth for rankings),
where starting a nested Ray Train run per child would cost more than it buys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from raynas.model_record import ModelRecord
from raynas.space import Arch, SearchSpace
from raynas.train.config import TrainConfig
from raynas.train.data_feed import ShardFeed, packed_model
from raynas.train.loop import FixedChild, accuracy, run_epoch
from raynas.train.modes import configure_trainable, make_optimizer, make_scheduler
from raynas.train.sandwich import Member
from raynas.train.speed import training_speed


@dataclass
class ChildEpoch:
    """Where standalone training of one child stands after an epoch."""

    epoch: int
    val_accuracy: float
    train_loss: float  # mean minibatch loss of the epoch
    train_loss_sum: float  # sum of its minibatch losses: what training-speed estimation adds up
    seconds: float
    child: nn.Module  # the plain exported module being trained (not a copy)


def train_child(record: ModelRecord, arch: Arch, packed: dict[str, Any], config: TrainConfig,
                device: str = "cpu", init_state: dict[str, Any] | None = None) -> Iterator[ChildEpoch]:
    """Train ``arch``, a child of the supernet ``record`` describes, on ``packed`` data (see
    ``pack_splits``), yielding after each epoch.

    From scratch (init seeded by ``config.seed``), or from ``init_state`` (the child's state
    dict, e.g. weights inherited from a trained supernet, for a fine-tune). A caller that stops
    early (an early-stopping scheduler) simply stops iterating.
    """
    config = config.replace(mode="full", num_random=0)
    space = record.space
    started = time.perf_counter()
    child = record.build(seed=config.seed).export(arch)
    if init_state is not None:
        child.load_state_dict({k: torch.as_tensor(v) for k, v in init_state.items()})
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    model = FixedChild(child.train()).to(device, memory_format=memory_format)
    feed = ShardFeed.from_packed(packed, config.batch_size, 0, 1, config.seed, config.augment, torch.device(device),
                                 config.cutout)
    configure_trainable(model, config)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, feed.steps_per_epoch(), config)
    members = [Member("child", arch)]
    step = 0
    for epoch in range(config.epochs):
        step, losses, _ = run_epoch(model, model, feed, epoch, step, lambda s: members, optimizer, scheduler,
                                    config, space.key)
        loss_sum = losses.get("child", float("nan"))
        yield ChildEpoch(epoch + 1, accuracy(model, packed, feed, arch, torch.device(device)),
                         loss_sum / max(1, feed.steps_per_epoch()), loss_sum, time.perf_counter() - started,
                         model.child)


def fit_child(space: SearchSpace, arch: Arch, packed: dict[str, Any], config: TrainConfig,
              device: str = "cpu") -> dict[str, Any]:
    """Train ``arch`` of ``space`` for ``config.epochs`` epochs; returns its final val accuracy, its
    cost, each epoch's sum of minibatch losses and the training speed they add up to (``tse``,
    ``tse_e``), so a caller can rank by either without training again.

    The model is ``space`` on the packed data with ``config``'s BN layout (``packed_model``).
    """
    epochs = list(train_child(packed_model(space, packed, config.bn_layout), arch, packed, config, device))
    sums = [e.train_loss_sum for e in epochs]  # config.epochs >= 1 is validated by TrainConfig
    return {"arch": space.key(arch), "val_accuracy": epochs[-1].val_accuracy, "train_loss": epochs[-1].train_loss,
            "seconds": epochs[-1].seconds, "epoch_loss_sums": sums, **training_speed(sums)}
