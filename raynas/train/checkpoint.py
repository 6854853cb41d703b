"""Training checkpoints: everything needed to resume, and to use the supernet downstream.

A checkpoint is a directory with ``state.pt`` (weights, optimiser, scheduler, RNG, step) and
``meta.json`` (space, config, data description, metrics), readable without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from raynas.errors import ConfigError
from raynas.space import SearchSpace, space_from_dict
from raynas.supernet import Supernet, build_supernet
from raynas.train.config import TrainConfig

STATE_FILE = "state.pt"
META_FILE = "meta.json"


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data: classes, channels, normalisation."""

    spec: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def of(cls, data: Any) -> "DataInfo":
        """The description of loaded ``DataSplits`` (what a model needs, not the images)."""
        return cls(data.name, data.num_classes, data.channels, data.image_size, data.mean, data.std, data.hflip)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DataInfo":
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})


def write_checkpoint(folder: Path, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / STATE_FILE)
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, folder / META_FILE)
    return folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run (one whose meta.json was written)."""
    found = [p.parent for p in run_dir.glob(f"checkpoint_*/{META_FILE}")]
    return max(found, key=lambda p: (read_meta(p).get("epoch", 0), p.stat().st_mtime)) if found else None


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    folder = Path(path)
    if not (folder / META_FILE).is_file():
        raise ConfigError(f"{folder} is not a raynas checkpoint: {META_FILE} is missing")
    return json.loads((folder / META_FILE).read_text())


def read_state(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(Path(path) / STATE_FILE, map_location=device, weights_only=False)


@dataclass
class LoadedCheckpoint:
    """A trained supernet with its space, data description and training config."""

    supernet: Supernet
    space: SearchSpace
    data: DataInfo
    config: TrainConfig
    epoch: int
    checkpoint_id: str
    path: Path
    metrics: list[dict[str, Any]]


def checkpoint_id(path: Path, meta: dict[str, Any]) -> str:
    """A short stable id for result rows: which run, which epoch."""
    digest = hashlib.sha1(f"{meta.get('run_name')}:{meta.get('epoch')}:{path.name}".encode()).hexdigest()[:10]
    return f"{meta.get('run_name', path.parent.name)}@{meta.get('epoch')}-{digest}"


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the supernet of a checkpoint, with its trained weights and BN state."""
    folder = Path(path)
    meta = read_meta(folder)
    space = space_from_dict(meta["space"], source=str(folder / META_FILE), default_name=meta["space_name"])
    data = DataInfo.from_dict(meta["data"])
    config = TrainConfig.from_dict(meta["config"])
    supernet = build_supernet(space, data.num_classes, data.in_channels, seed=config.seed, bn_layout=config.bn_layout)
    supernet.load_state_dict(read_state(folder, device)["model"])
    return LoadedCheckpoint(
        supernet.to(device).eval(), space, data, config, int(meta["epoch"]), checkpoint_id(folder, meta), folder,
        meta.get("metrics", []),
    )
