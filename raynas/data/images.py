"""In-memory image sets: small datasets are decoded once and kept as uint8 tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageSet:
    """Decoded images (N, C, H, W) uint8, their int64 labels, and their ids in the source.

    Ids let a result record exactly which images were used (for example for BN calibration).
    """

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "ImageSet":
        ids = torch.arange(len(self)) if self.ids is None else self.ids
        return ImageSet(self.images[index], self.labels[index], ids[index])


@dataclass(frozen=True)
class DataSplits:
    """Seeded, disjoint train / calibration / validation / test splits of one dataset.

    ``val`` is what selection looks at; ``test`` is read once, for the final report, and is
    never packed for training workers or evaluator actors.
    """

    name: str
    train: ImageSet
    calib: ImageSet
    val: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True  # whether mirrored images are still valid examples (not for digits)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.train)} train / {len(self.calib)} calib / {len(self.val)} val / "
            f"{len(self.test)} test images, "
            f"{self.channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes"
        )
