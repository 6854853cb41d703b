"""Supernet training: the sandwich step (pure), modes, checkpoints, and the Ray Train loop."""

from raynas.train.api import Scaling, TrainResult, retrain, train_supernet
from raynas.train.checkpoint import DataInfo, LoadedCheckpoint, load_checkpoint
from raynas.train.config import TrainConfig
from raynas.train.sandwich import Member, distillation_loss, sandwich_members, sandwich_step

__all__ = [
    "DataInfo", "LoadedCheckpoint", "Member", "Scaling", "TrainConfig", "TrainResult", "distillation_loss",
    "load_checkpoint", "retrain", "sandwich_members", "sandwich_step", "train_supernet",
]
