"""Writing training checkpoints: everything needed to resume, and to use the supernet downstream.

Reading them (``load_checkpoint``, ``read_meta``, ``read_state``) lives in ``raynas.checkpoint``,
so layers after training need not import ``raynas.train``; the names are re-exported here.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raynas.checkpoint import (
    META_FILE,
    MODEL_KEY,
    STATE_FILE,
    LoadedCheckpoint,
    checkpoint_id,
    latest_checkpoint,
    load_checkpoint,
    model_record,
    read_meta,
    read_state,
)
from raynas.model_record import DataInfo, ModelRecord

__all__ = [
    "META_FILE", "MODEL_KEY", "STATE_FILE", "DataInfo", "LoadedCheckpoint", "ModelRecord", "checkpoint_id",
    "latest_checkpoint", "load_checkpoint", "model_record", "read_meta", "read_state", "restore_rng", "rng_state",
    "write_checkpoint",
]


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


def rng_state() -> dict[str, Any]:
    """The global generators of torch, numpy and ``random``, as tensors and plain values.

    That form loads with ``weights_only=True`` (numpy's and Python's own state objects would not).
    """
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": {"name": name, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
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
