"""Parse a DATA string and cut seeded, disjoint train / calibration / validation splits."""

from __future__ import annotations

import torch

from raynas.data.images import DataSplits, ImageSet
from raynas.data.sources import cifar10_source, digits_source, imagefolder_source, synthetic_source
from raynas.errors import DataError

FORMATS = "digits, synthetic, cifar10:ROOT, imagefolder:ROOT"


def load_data(
    spec: str,
    seed: int = 0,
    calib_images: int | None = None,
    val_fraction: float = 0.2,
    max_train_images: int | None = None,
    max_val_images: int | None = None,
    download: bool = False,
) -> DataSplits:
    """Load ``spec`` and split it; the same seed always gives the same splits.

    Validation is the dataset's test split where it has one, else a held-out fraction.
    Calibration images are held out of the training pool (default: 10%, at most 2,000).
    """
    kind, _, root = spec.partition(":")
    if kind == "digits":
        pool, test, classes = digits_source()
    elif kind == "synthetic":
        pool, test, classes = synthetic_source(seed=0)
    elif kind == "cifar10" and root:
        pool, test, classes = cifar10_source(root, download)
    elif kind == "imagefolder" and root:
        pool, test, classes = imagefolder_source(root)
    else:
        raise DataError(f"unknown dataset {spec!r}; valid formats: {FORMATS}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pool), generator=gen)
    if test is None:
        n_val = max(1, int(len(pool) * val_fraction))
        test, order = pool.subset(order[:n_val]), order[n_val:]
    n_calib = calib_images if calib_images is not None else min(2000, max(1, len(order) // 10))
    if not 0 < n_calib < len(order):
        raise DataError(f"calib_images must be in [1, {len(order) - 1}] for {spec}, got {n_calib}")
    calib, train = pool.subset(order[:n_calib]), pool.subset(order[n_calib:][:max_train_images])
    if max_val_images is not None:
        test = test.subset(torch.randperm(len(test), generator=gen)[:max_val_images])
    mean, std = _channel_stats(train)
    return DataSplits(spec, train, calib, test, classes, mean, std, hflip=kind != "digits")


def _channel_stats(data: ImageSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = data.images[:10_000].float().div(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
