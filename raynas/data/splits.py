"""Parse a DATA string and cut seeded, disjoint train / calibration / validation / test splits."""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

import torch

from raynas.data.images import DataSplits, ImageSet
from raynas.data.sources import cifar10_source, digits_source, imagefolder_source, shards_source, synthetic_source
from raynas.errors import DataError

FORMATS = "digits, synthetic, cifar10:ROOT, imagefolder:ROOT, shards:ROOT"
MIN_VAL_IMAGES = 200
"""Selection on fewer validation images than this is mostly noise (one image = 0.5%)."""


class Subsettable(Protocol):
    """What splits are carved from: decoded images (``ImageSet``) or a file list (``FileSet``)."""

    def __len__(self) -> int: ...

    def subset(self, index: torch.Tensor) -> Self: ...


S = TypeVar("S", bound=Subsettable)


def load_data(
    spec: str,
    seed: int = 0,
    calib_images: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
    max_test_images: int | None = None,
    download: bool = False,
) -> DataSplits:
    """Load ``spec`` and split it (``carve_splits``); the same seed always gives the same splits."""
    kind, _, root = spec.partition(":")
    pool, test, classes = _source(kind, root, spec, download)
    if test is not None:  # ids after the pool's, so an id names one image of the whole dataset
        test = ImageSet(test.images, test.labels, torch.arange(len(test)) + len(pool))
    train, calib, val, test = carve_splits(
        spec, pool, test, seed, calib_images=calib_images, val_fraction=val_fraction, test_fraction=test_fraction,
        max_train_images=max_train_images, max_val_images=max_val_images, max_test_images=max_test_images)
    mean, std = _channel_stats(train)
    return DataSplits(spec, train, calib, val, test, classes, mean, std, hflip=kind != "digits")


def carve_splits(spec: str, pool: S, test: S | None, seed: int, *, calib_images: int | None, val_fraction: float,
                 test_fraction: float, max_train_images: int | None, max_val_images: int | None,
                 max_test_images: int | None) -> tuple[S, S, S, S]:
    """(train, calib, val, test) of ``pool``, seeded; the same for decoded images and for file lists.

    Test is the dataset's own test split where it has one, else a held-out ``test_fraction`` of
    the pool; it is for the final report only. Validation (what selection looks at) and
    calibration images are carved from the training pool, so selection never sees a test image.
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pool), generator=gen)
    if test is None:
        n_test = _share(len(pool), test_fraction, "test_fraction", spec)
        test, order = pool.subset(order[:n_test]), order[n_test:]
    n_val = max(min(MIN_VAL_IMAGES, len(order) // 4), _share(len(order), val_fraction, "val_fraction", spec))
    val, order = pool.subset(order[:n_val]), order[n_val:]
    n_calib = calib_images if calib_images is not None else min(2000, max(1, len(order) // 10))
    if not 0 < n_calib < len(order):
        raise DataError(f"calib_images must be in [1, {len(order) - 1}] for {spec}, got {n_calib}")
    calib, train = pool.subset(order[:n_calib]), pool.subset(order[n_calib:][:max_train_images])
    return train, calib, _capped(val, max_val_images, gen), _capped(test, max_test_images, gen)


def _source(kind: str, root: str, spec: str, download: bool):
    if kind == "digits":
        return digits_source()
    if kind == "synthetic":
        return synthetic_source(seed=0)
    if kind == "cifar10" and root:
        return cifar10_source(root, download)
    if kind == "imagefolder" and root:
        return imagefolder_source(root)
    if kind == "shards" and root:
        return shards_source(root)
    raise DataError(f"unknown dataset {spec!r}; valid formats: {FORMATS}")


def _share(total: int, fraction: float, name: str, spec: str) -> int:
    if not 0 < fraction < 1:
        raise DataError(f"{name} must be in (0, 1), got {fraction}")
    count = int(total * fraction)
    if count < 1:
        raise DataError(f"{spec} has {total} images: {name}={fraction} leaves no image for that split")
    return count


def _capped(data: S, limit: int | None, gen: torch.Generator) -> S:
    if limit is None or limit >= len(data):
        return data
    if limit < 1:
        raise DataError(f"an image cap must be >= 1, got {limit}")
    return data.subset(torch.randperm(len(data), generator=gen)[:limit])


def _channel_stats(data: ImageSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = data.images[:10_000].float().div(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
