"""Supernet families by name: a space file's ``family`` picks its builder."""

from __future__ import annotations

from collections.abc import Callable

import torch

from raynas.errors import SpaceError
from raynas.space import SearchSpace
from raynas.supernet.base import Supernet
from raynas.supernet.mobilenet import MobileNetSupernet
from raynas.supernet.nb201 import NB201Supernet

SupernetBuilder = Callable[..., Supernet]
_FAMILIES: dict[str, SupernetBuilder] = {}


def register_family(name: str, builder: SupernetBuilder) -> None:
    """Make ``family: name`` space files build their supernet with ``builder``."""
    _FAMILIES[name] = builder


def known_families() -> list[str]:
    return sorted(_FAMILIES)


def build_supernet(
    space: SearchSpace, num_classes: int, in_channels: int = 3, seed: int = 0, bn_layout: str = "private"
) -> Supernet:
    """Build the space's supernet with weights initialised from ``seed`` (global RNG untouched)."""
    if space.family not in _FAMILIES:
        raise SpaceError(f"unknown supernet family {space.family!r}; known families: {known_families()}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _FAMILIES[space.family](space, num_classes, in_channels, bn_layout=bn_layout)


register_family("mobilenet", MobileNetSupernet)
register_family("nb201", NB201Supernet)
