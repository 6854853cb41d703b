"""Training checkpoints: everything needed to resume, and to use the supernet downstream.

A checkpoint is a directory with ``state.pt`` (weights, optimiser, scheduler, RNG, step) and
``meta.json`` (space, config, data description, metrics), readable without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    """Write ``state.pt`` then ``meta.json``, each atomically: a folder with meta.json is complete."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp_state = folder / (STATE_FILE + ".tmp")
    torch.save(state, tmp_state)
    os.replace(tmp_state, folder / STATE_FILE)
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, folder / META_FILE)
    return folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run (one whose meta.json was written)."""
    found = [p.parent for p in run_dir.glob(f"checkpoint_*/{META_FILE}")]
    return max(found, key=lambda p: (read_meta(p).get("epoch", 0), p.stat().st_mtime)) if found else None


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's ``meta.json``; a missing folder or file, or broken JSON, is a ``ConfigError``."""
    folder = Path(path)
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


def read_state(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's ``state.pt``, loaded with ``weights_only=True``: tensors and plain values only.

    A file that would import or run code is refused, never executed; a truncated or corrupt one is
    a ``ConfigError`` naming it, not a traceback from the unpickler.
    """
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise ConfigError(f"{file} is missing: the checkpoint is incomplete")
    try:
        state = torch.load(file, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        code = re.search(r"GLOBAL (\S+)", str(err))
        if code:
            raise ConfigError(
                f"{file} was refused: it asks to load {code.group(1)}, but a raynas checkpoint holds only tensors "
                f"and plain values; it was not written by raynas or was tampered with, so do not use it"
            ) from None
        raise ConfigError(f"{file} is not a readable checkpoint (truncated or corrupt): {_reason(err)}") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise ConfigError(f"{file} is not a readable checkpoint (truncated or corrupt): {_reason(err)}") from None
    except OSError as err:
        raise ConfigError(f"{file} cannot be read: {err}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"{file} is not a raynas checkpoint: it holds no model state")
    return state


def _reason(err: BaseException) -> str:
    """The informative line of a loader error (torch wraps it in paragraphs of advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if line.startswith(("Unsupported", "PytorchStreamReader"))]
    return (specific or lines or ["the file ends early" if isinstance(err, EOFError) else type(err).__name__])[0][:200]


def rng_state() -> dict[str, Any]:
    """The global generators of torch, numpy and ``random``, as tensors and plain values.

    That form loads with ``weights_only=True`` (numpy's and Python's own state objects would not).
    """
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python_rng": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Set the generators saved by ``rng_state`` (checkpoints older than numpy/random state keep theirs)."""
    torch.set_rng_state(state["torch_rng"])
    if "numpy_rng" in state:
        saved = state["numpy_rng"]
        np.random.set_state((saved["name"], saved["keys"].numpy().astype(np.uint32), saved["pos"],
                             saved["has_gauss"], saved["cached_gaussian"]))
    if "python_rng" in state:
        saved = state["python_rng"]
        random.setstate((saved["version"], tuple(saved["state"]), saved["gauss_next"]))


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
    source = folder / META_FILE
    missing = [key for key in ("space", "space_name", "data", "config", "epoch") if key not in meta]
    if missing:
        raise ConfigError(f"{source} lacks key(s) {missing}: it is not a complete raynas checkpoint")
    space = space_from_dict(meta["space"], source=str(source), default_name=meta["space_name"])
    try:
        data = DataInfo.from_dict(meta["data"])
        config = TrainConfig.from_dict(meta["config"])
    except (ConfigError, TypeError, KeyError) as err:
        raise ConfigError(f"{source}: {err}") from None
    supernet = build_supernet(space, data.num_classes, data.in_channels, seed=config.seed, bn_layout=config.bn_layout)
    try:
        supernet.load_state_dict(read_state(folder, device)["model"])
    except RuntimeError as err:
        raise ConfigError(f"{folder / STATE_FILE} does not hold the weights of the supernet {source} describes: "
                          f"{str(err).splitlines()[0]}") from None
    return LoadedCheckpoint(
        supernet.to(device).eval(), space, data, config, int(meta["epoch"]), checkpoint_id(folder, meta), folder,
        meta.get("metrics", []),
    )
