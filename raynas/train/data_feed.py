"""Moving training data to workers: one zero-copy object in Ray's store, batches by index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from raynas.data import DataSplits, augment, to_model_input
from raynas.train.checkpoint import DataInfo


def pack_splits(data: DataSplits, train_images: int | None = None) -> dict[str, Any]:
    """Numpy arrays for ``ray.put``: workers read them without copies."""
    n = len(data.train) if train_images is None else min(train_images, len(data.train))
    return {
        "train_images": data.train.images[:n].numpy(),
        "train_labels": data.train.labels[:n].numpy(),
        "val_images": data.val.images.numpy(),
        "val_labels": data.val.labels.numpy(),
        "info": DataInfo.of(data).to_dict(),
    }


@dataclass
class ShardFeed:
    """This rank's batches of one epoch: a DistributedSampler over in-memory uint8 images."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DataInfo
    batch_size: int
    rank: int
    world: int
    seed: int
    augment: bool

    @classmethod
    def from_packed(cls, packed: dict[str, Any], batch_size: int, rank: int, world: int, seed: int, augment: bool,
                    device: torch.device) -> "ShardFeed":
        images = torch.from_numpy(np.array(packed["train_images"])).to(device)
        labels = torch.from_numpy(np.array(packed["train_labels"])).to(device)
        return cls(images, labels, DataInfo.from_dict(packed["info"]), batch_size, rank, world, seed, augment)

    def steps_per_epoch(self) -> int:
        return len(self.labels) // (self.batch_size * self.world)

    def epoch(self, epoch: int, first_step: int) -> "list[tuple[int, torch.Tensor, torch.Tensor]]":
        """(global step, images, labels) for this rank; augmentation seeded by (seed, step, rank)."""
        sampler = DistributedSampler(
            range(len(self.labels)), num_replicas=self.world, rank=self.rank, shuffle=True, seed=self.seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=self.images.device)
        batches = []
        for i in range(self.steps_per_epoch()):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            images = self.images[index]
            if self.augment:
                gen = torch.Generator().manual_seed(hash((self.seed, first_step + i, self.rank)) & 0x7FFFFFFF)
                images = augment(images.cpu(), gen, hflip=self.info.hflip).to(self.images.device)
            batches.append((first_step + i, images, self.labels[index]))
        return batches

    def to_input(self, images: torch.Tensor, resolution: int) -> torch.Tensor:
        return to_model_input(images, self.info.mean, self.info.std, resolution)
