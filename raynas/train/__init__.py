"""Supernet training: the sandwich step (pure), modes, checkpoints, and the Ray Train loop.

The names below load on first use (PEP 562), so ``raynas.train.config`` can be read (checkpoint
reading does, and BPE settings do) without importing Ray Train and the training loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raynas.train.api import Scaling, TrainResult, retrain, train_supernet
    from raynas.train.checkpoint import DataInfo, LoadedCheckpoint, load_checkpoint
    from raynas.train.config import TrainConfig
    from raynas.train.sandwich import Member, distillation_loss, sandwich_members, sandwich_step

_HOMES = {
    "Scaling": "api", "TrainResult": "api", "retrain": "api", "train_supernet": "api",
    "DataInfo": "checkpoint", "LoadedCheckpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "TrainConfig": "config",
    "Member": "sandwich", "distillation_loss": "sandwich", "sandwich_members": "sandwich", "sandwich_step": "sandwich",
}
"""Public name -> the module of ``raynas.train`` that defines it."""

__all__ = [
    "DataInfo", "LoadedCheckpoint", "Member", "Scaling", "TrainConfig", "TrainResult", "distillation_loss",
    "load_checkpoint", "retrain", "sandwich_members", "sandwich_step", "train_supernet",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
