"""Moving training data to workers: one zero-copy object in Ray's store, batches by index;
or, for large data, a file list that each worker streams through Ray Data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from raynas.data import DataSplits, FileSet, StreamSplits, augment, cutout, to_model_input
from raynas.data.streaming import epoch_order, sampler_order, stream_batches
from raynas.model_record import DataInfo, ModelRecord
from raynas.space import SearchSpace

Batch = tuple[int, torch.Tensor, torch.Tensor]
Packed = dict[str, Any]
"""What ``pack_splits`` or ``pack_stream`` gives: arrays or a file list, and the data's ``"info"``."""


def pack_splits(data: DataSplits, train_images: int | None = None) -> Packed:
    """Numpy arrays for ``ray.put``: workers read them without copies."""
    n = len(data.train) if train_images is None else min(train_images, len(data.train))
    return {
        "train_images": data.train.images[:n].numpy(),
        "train_labels": data.train.labels[:n].numpy(),
        "val_images": data.val.images.numpy(),
        "val_labels": data.val.labels.numpy(),
        "info": DataInfo.of(data).to_dict(),
    }


def pack_stream(data: StreamSplits, train_images: int | None = None, with_val: bool = False) -> Packed:
    """The training file list (no image) for ``ray.put``; validation images only where the loop scores them."""
    n = len(data.train) if train_images is None else min(train_images, len(data.train))
    val = data.val if with_val else None
    return {
        "train_files": data.train.subset(np.arange(n)),
        "size": data.size,
        "val_images": val.images.numpy() if val else np.empty((0, 3, data.size[1], data.size[0]), np.uint8),
        "val_labels": val.labels.numpy() if val else np.empty(0, np.int64),
        "info": DataInfo.of(data).to_dict(),
    }


def packed_model(space: SearchSpace, packed: Packed, bn_layout: str) -> ModelRecord:
    """The record of a supernet of ``space`` trained on what was packed: the same description
    (classes, channels, normalisation) its feed reads, so the two cannot disagree."""
    return ModelRecord.of(space, packed_info(packed), bn_layout)


def packed_info(packed: Packed) -> DataInfo:
    """The description of the data ``pack_splits`` or ``pack_stream`` packed."""
    return DataInfo.from_dict(packed["info"])


def make_feed(packed: Packed, batch_size: int, rank: int, world: int, seed: int, augment: bool,
              device: torch.device, cutout: int = 0) -> "ShardFeed | StreamFeed":
    """The feed for what ``pack_splits`` (in-memory images) or ``pack_stream`` (a file list) packed."""
    if "train_files" in packed:
        return StreamFeed(packed_info(packed), batch_size, rank, world, seed, augment,
                          packed["train_files"], tuple(packed["size"]), device, cutout=cutout)
    return ShardFeed.from_packed(packed, batch_size, rank, world, seed, augment, device, cutout)


@dataclass
class _Feed:
    """What every feed shares: this rank of ``world``, fixed steps per epoch, seeded augmentation."""

    info: DataInfo
    batch_size: int
    rank: int
    world: int
    seed: int
    augment: bool
    cutout: int = field(default=0, kw_only=True)

    def _steps(self, count: int) -> int:
        return count // (self.batch_size * self.world)  # drop_last: every rank takes the same steps

    def _augmented(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """``augment``, then ``cutout``, seeded by (seed, step, rank): a resumed run draws the same
        crops, flips and squares."""
        if not self.augment and not self.cutout:
            return images
        gen = torch.Generator().manual_seed(hash((self.seed, step, self.rank)) & 0x7FFFFFFF)
        out = images.cpu()
        if self.augment:
            out = augment(out, gen, hflip=self.info.hflip)
        if self.cutout:
            out = cutout(out, gen, self.cutout, [round(255 * m) for m in self.info.mean])
        return out.to(images.device)

    def to_input(self, images: torch.Tensor, resolution: int) -> torch.Tensor:
        return to_model_input(images, self.info.mean, self.info.std, resolution)


@dataclass
class ShardFeed(_Feed):
    """This rank's batches of one epoch: a DistributedSampler over in-memory uint8 images."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_packed(cls, packed: Packed, batch_size: int, rank: int, world: int, seed: int, augment: bool,
                    device: torch.device, cutout: int = 0) -> "ShardFeed":
        images = torch.from_numpy(np.array(packed["train_images"])).to(device)
        labels = torch.from_numpy(np.array(packed["train_labels"])).to(device)
        return cls(packed_info(packed), batch_size, rank, world, seed, augment, images, labels, cutout=cutout)

    def steps_per_epoch(self) -> int:
        return self._steps(len(self.labels))

    def epoch(self, epoch: int, first_step: int) -> list[Batch]:
        """(global step, images, labels) for this rank; augmentation seeded by (seed, step, rank)."""
        per_rank = self.steps_per_epoch() * self.batch_size
        order = torch.from_numpy(sampler_order(len(self.labels), self.seed, epoch, self.rank, self.world, per_rank))
        order = order.to(self.images.device)
        batches = []
        for i in range(self.steps_per_epoch()):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            batches.append((first_step + i, self._augmented(self.images[index], first_step + i), self.labels[index]))
        return batches


@dataclass
class StreamFeed(_Feed):
    """This rank's batches of one epoch, read and decoded by Ray Data tasks in a seeded order.

    The same interface as ``ShardFeed``; ``epoch`` is an iterator, since the images arrive as
    they are decoded. The order depends only on (seed, epoch, rank) (``epoch_order``), so a
    resumed run reads the same batches as an uninterrupted one; on an image folder they are the
    batches ``ShardFeed`` would give.
    """

    files: FileSet
    size: tuple[int, int]
    device: torch.device

    def steps_per_epoch(self) -> int:
        return self._steps(len(self.files))

    def epoch(self, epoch: int, first_step: int) -> Iterator[Batch]:
        order = epoch_order(self.files, self.seed, epoch, self.rank, self.world, self.steps_per_epoch() * self.batch_size)
        for i, (images, labels) in enumerate(stream_batches(self.files.subset(order), self.size, self.batch_size)):
            batch = torch.from_numpy(np.array(images)).to(self.device)  # a copy: Ray's arrays are read-only
            yield first_step + i, self._augmented(batch, first_step + i), torch.from_numpy(np.array(labels)).to(self.device)
