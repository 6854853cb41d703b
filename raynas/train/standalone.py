"""Standalone training of one child in the calling process (no Ray Train), for ground truth.

The same pieces as the Ray Train loop (seeded init, shard feed, sandwich step with one member,
schedule), so a child trained here and one trained by ``retrain`` follow the same recipe. Used
inside Ray Tune trials, where starting a nested Ray Train run per child would cost more than it
buys.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from raynas.space import Arch, SearchSpace
from raynas.supernet import build_supernet
from raynas.train.config import TrainConfig
from raynas.train.data_feed import ShardFeed
from raynas.train.loop import FixedChild, accuracy, run_epoch
from raynas.train.modes import configure_trainable, make_optimizer, make_scheduler
from raynas.train.sandwich import Member


def fit_child(space: SearchSpace, arch: Arch, packed: dict[str, Any], config: TrainConfig,
              device: str = "cpu") -> dict[str, Any]:
    """Train ``arch`` from scratch on ``packed`` data (see ``pack_splits``); returns its val accuracy."""
    config = config.replace(mode="full", num_random=0)
    info = packed["info"]
    started = time.perf_counter()
    supernet = build_supernet(space, info["num_classes"], info["in_channels"], seed=config.seed, bn_layout=config.bn_layout)
    model = FixedChild(supernet.export(arch).train()).to(device)
    feed = ShardFeed.from_packed(packed, config.batch_size, 0, 1, config.seed, config.augment, torch.device(device))
    configure_trainable(model, config)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, feed.steps_per_epoch(), config)
    members = [Member("child", arch)]
    step, losses = 0, {}
    for epoch in range(config.epochs):
        step, losses, steps = run_epoch(model, model, feed, epoch, step, lambda s: members, optimizer, scheduler,
                                        config, space.key)
    return {"arch": space.key(arch), "val_accuracy": accuracy(model, packed, feed, arch, torch.device(device)),
            "train_loss": losses.get("child", float("nan")) / max(1, feed.steps_per_epoch()),
            "seconds": time.perf_counter() - started}
