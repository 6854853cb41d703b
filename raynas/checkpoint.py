"""Reading training checkpoints: what every layer after training needs, without ``raynas.train``.

A checkpoint is a directory with ``state.pt`` (weights, optimiser, scheduler, RNG, step) and
``meta.json`` (the ``ModelRecord`` under ``"model"``, config, metrics), readable without torch.
Checkpoints written before the record existed keep the space, its name and the data at the
top level of ``meta.json``; ``model_record`` reads both shapes. Writing lives in
``raynas.train.checkpoint``.
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
from raynas.model_record import DataInfo, ModelRecord
from raynas.safe_load import load_tensors
from raynas.space import SearchSpace, space_from_dict
from raynas.supernet import Supernet
from raynas.train.config import TrainConfig  # the config module alone: no Ray Train, no training loop

STATE_FILE = "state.pt"
META_FILE = "meta.json"
MODEL_KEY = "model"


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's ``meta.json``; a missing folder or file, or broken JSON, is a ``ConfigError``."""
    folder = Path(path)
    if folder.is_file():
        raise ConfigError(f"{folder} is a file, not a raynas checkpoint: pass the checkpoint's folder (the one holding "
                          f"{META_FILE} and {STATE_FILE})")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a raynas checkpoint: the folder does not exist")
    file = folder / META_FILE
    if not file.is_file():
        raise ConfigError(f"{folder} is not a raynas checkpoint: {META_FILE} is missing")
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{file} is not readable JSON (truncated or corrupt): {err}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{file} must hold a JSON object, got {type(meta).__name__}")
    return meta


def model_record(meta: dict[str, Any], source: str = META_FILE) -> ModelRecord:
    """The ``ModelRecord`` of a checkpoint's ``meta``, written under ``"model"`` or in the older flat shape."""
    if MODEL_KEY in meta:
        return ModelRecord.from_dict(meta[MODEL_KEY], source=source)
    missing = [key for key in ("space", "space_name", "data", "config") if key not in meta]
    if missing:
        raise ConfigError(f"{source} lacks key(s) {missing} (and a {MODEL_KEY!r} record): "
                          "it is not a complete raynas checkpoint")
    try:
        data = DataInfo.from_dict(meta["data"])
        bn_layout = TrainConfig.from_dict(meta["config"]).bn_layout
    except (ConfigError, TypeError, KeyError) as err:
        raise ConfigError(f"{source}: {err}") from None
    space = space_from_dict(meta["space"], source=source, default_name=meta["space_name"])
    return ModelRecord.of(space, data, bn_layout)


def read_state(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's ``state.pt``, loaded with ``weights_only=True``: tensors and plain values only.

    A file that would import or run code is refused, never executed; a truncated or corrupt one is
    a ``ConfigError`` naming it, not a traceback from the unpickler.
    """
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise ConfigError(f"{file} is missing: the checkpoint is incomplete")
    state = load_tensors(file, "checkpoint", device)
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"{file} is not a raynas checkpoint: it holds no model state")
    return state


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run (one whose meta.json was written)."""
    found = [p.parent for p in run_dir.glob(f"checkpoint_*/{META_FILE}")]
    return max(found, key=lambda p: (read_meta(p).get("epoch", 0), p.stat().st_mtime)) if found else None


@dataclass
class LoadedCheckpoint:
    """A trained supernet with its record (space, data description, BN layout) and training config."""

    supernet: Supernet
    space: SearchSpace
    data: DataInfo
    config: TrainConfig
    epoch: int
    checkpoint_id: str
    path: Path
    metrics: list[dict[str, Any]]
    model: ModelRecord


def checkpoint_id(path: Path, meta: dict[str, Any]) -> str:
    """A short stable id for result rows: which run, which epoch."""
    digest = hashlib.sha1(f"{meta.get('run_name')}:{meta.get('epoch')}:{path.name}".encode()).hexdigest()[:10]
    return f"{meta.get('run_name', path.parent.name)}@{meta.get('epoch')}-{digest}"


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the supernet of a checkpoint, with its trained weights and BN state."""
    folder = Path(path)
    meta = read_meta(folder)
    source = folder / META_FILE
    record = model_record(meta, str(source))
    missing = [key for key in ("config", "epoch") if key not in meta]
    if missing:
        raise ConfigError(f"{source} lacks key(s) {missing}: it is not a complete raynas checkpoint")
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (ConfigError, TypeError, KeyError) as err:
        raise ConfigError(f"{source}: {err}") from None
    supernet = record.build(seed=config.seed)
    try:
        supernet.load_state_dict(read_state(folder, device)["model"])
    except RuntimeError as err:
        raise ConfigError(f"{folder / STATE_FILE} does not hold the weights of the supernet {source} describes: "
                          f"{str(err).splitlines()[0]}") from None
    return LoadedCheckpoint(
        supernet.to(device).eval(), record.space, record.data, config, int(meta["epoch"]), checkpoint_id(folder, meta),
        folder, meta.get("metrics", []), record,
    )
