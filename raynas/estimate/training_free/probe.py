"""What a training-free estimator sees: one fixed, seeded minibatch and the children to score.

``ProbeBatch`` holds the minibatch as uint8 images (cheap to ship to actors) with their labels
and the data's normalisation; ``ScoringContext`` holds the supernet children are sliced from
(seeded at initialisation, or a checkpoint's) and builds each child's input at its resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import nn

from raynas.cost import CostModel
from raynas.data import DataSplits, to_model_input
from raynas.errors import ConfigError
from raynas.estimate.bn_indicator import BNIndicator, IndicatorSettings
from raynas.space import Arch, SearchSpace
from raynas.supernet import Supernet

DEFAULT_PROBE_IMAGES = 64
"""Images in the probe minibatch: NASWOT's and the zero-cost papers' batch size on CIFAR."""


@dataclass(frozen=True)
class Minibatch:
    """A child's input at its own resolution (float, normalised) and the labels."""

    inputs: torch.Tensor
    labels: torch.Tensor
    num_classes: int


@dataclass(frozen=True)
class ProbeBatch:
    """The fixed minibatch every child is scored on: the same images for every child and actor."""

    images: np.ndarray
    """uint8 (N, C, H, W)."""
    labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    image_ids: tuple[int, ...] = ()

    @classmethod
    def from_splits(cls, data: DataSplits, size: int = DEFAULT_PROBE_IMAGES, seed: int = 0) -> ProbeBatch:
        """``size`` training images drawn by ``seed`` (never validation or test images)."""
        if size < 2:
            raise ConfigError(f"the probe minibatch needs at least 2 images, got {size}")
        pool = data.train
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:size]
        chosen = pool.subset(order)
        ids = tuple(int(i) for i in chosen.ids) if chosen.ids is not None else ()
        return cls(chosen.images.numpy(), chosen.labels.numpy(), tuple(data.mean), tuple(data.std),
                   data.num_classes, ids)

    def at(self, resolution: int) -> Minibatch:
        images = torch.from_numpy(np.array(self.images))
        inputs = to_model_input(images, self.mean, self.std, resolution)
        return Minibatch(inputs, torch.from_numpy(np.array(self.labels)).long(), self.num_classes)


@dataclass
class ScoringContext:
    """A supernet to slice children from, its probe minibatch, and the table-lookup scorers."""

    supernet: Supernet
    probe: ProbeBatch | None = None
    indicator: IndicatorSettings = field(default_factory=IndicatorSettings)
    """``BNIndicator`` settings for ``bn_score`` (depth rule, measure)."""
    _by_resolution: dict[int, Minibatch] = field(default_factory=dict, init=False, repr=False)

    @property
    def space(self) -> SearchSpace:
        return self.supernet.space

    def child(self, arch: Arch) -> nn.Module:
        """A fresh, independent copy of ``arch`` with the supernet's weights (nothing shared)."""
        return self.supernet.export(arch).train()

    def minibatch(self, arch: Arch) -> Minibatch:
        if self.probe is None:
            raise ConfigError("this estimator reads images: pass data (--data) to build the probe minibatch")
        resolution = int(arch.get("resolution", self.probe.images.shape[-1]))
        if resolution not in self._by_resolution:
            self._by_resolution[resolution] = self.probe.at(resolution)
        return self._by_resolution[resolution]

    @cached_property
    def costs(self) -> CostModel:
        return CostModel(self.space, self.supernet.num_classes, self.supernet.in_channels)

    @cached_property
    def bn_indicator(self) -> BNIndicator:
        return BNIndicator(**self.indicator).fit(self.supernet)
