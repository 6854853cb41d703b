"""Build the supernet a space file's ``family`` names (``Family.supernet``), with seeded weights."""

from __future__ import annotations

import torch

from raynas.errors import SpaceError
from raynas.space import SearchSpace
from raynas.space._family import family_part
from raynas.supernet.base import Supernet


def build_supernet(
    space: SearchSpace, num_classes: int, in_channels: int = 3, seed: int = 0, bn_layout: str = "private"
) -> Supernet:
    """Build the space's supernet with weights initialised from ``seed`` (global RNG untouched)."""
    builder = family_part(space.family, "supernet", "supernet", SpaceError)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        supernet: Supernet = builder(space, num_classes, in_channels, bn_layout=bn_layout)
        return supernet
