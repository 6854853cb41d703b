"""Checkpoints from untrusted or damaged files: refused or reported in one line, never executed."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from raynas.cli import main
from raynas.errors import ConfigError
from raynas.space import load_space
from raynas.supernet import build_supernet
from raynas.train import TrainConfig, load_checkpoint
from raynas.train.checkpoint import DataInfo, read_state, restore_rng, rng_state, write_checkpoint


DIGITS = DataInfo("digits", num_classes=10, in_channels=1, image_size=8, mean=(0.3,), std=(0.4,), hflip=False)


class Payload:
    """Pickles as a call to ``open(marker, "w")``: loading it with code allowed creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A supernet checkpoint as the training loop writes it (weights, RNG state, meta)."""
    space = load_space("tiny")
    net = build_supernet(space, 10, 1)
    meta = {"format": "raynas-checkpoint/1", "run_name": "safe", "epoch": 1, "space": space.definition,
            "space_name": space.name, "config": TrainConfig().to_dict(), "data": DIGITS.to_dict(),
            "metrics": [{"epoch": 1, "step": 8}]}
    state = {"model": net.state_dict(), **rng_state(), "epoch": 0, "step": 8, "history": meta["metrics"]}
    return write_checkpoint(tmp_path / "run" / "checkpoint_epoch_0001", state, meta)


def draws() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_checkpoint_and_rng_state_load_with_weights_only(checkpoint, tmp_path):
    loaded = load_checkpoint(checkpoint)
    assert loaded.epoch == 1 and loaded.space == load_space("tiny")
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = draws()
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == expected


def test_a_pickle_payload_is_refused_and_never_runs(checkpoint, tmp_path, capsys):
    live = tmp_path / "live"
    torch.save({"model": Payload(live)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert live.exists(), "the crafted payload must be live for this test to mean anything"

    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker)}, checkpoint / "state.pt")
    refused = re.escape(f"{checkpoint / 'state.pt'} was refused: it asks to load io.open, but a raynas checkpoint "
                        "holds only tensors and plain values")
    with pytest.raises(ConfigError, match=refused):
        read_state(checkpoint)
    with pytest.raises(ConfigError, match=refused):
        load_checkpoint(checkpoint)
    assert main(["score", str(checkpoint), "--all", "--out", str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert "was refused: it asks to load io.open" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


def write(name: str, content: bytes | str) -> Callable[[Path], Any]:
    """A harm: overwrite ``name`` in the checkpoint folder with ``content``."""
    return lambda folder: (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())


def truncate(folder: Path) -> None:
    data = (folder / "state.pt").read_bytes()
    (folder / "state.pt").write_bytes(data[: len(data) // 2])


CORRUPT = "state.pt is not a readable checkpoint \\(truncated or corrupt\\)"
DAMAGE: dict[str, tuple[Callable[[Path], Any], str]] = {
    "truncated state.pt": (truncate, f"{CORRUPT}: PytorchStreamReader failed"),
    "random-bytes state.pt": (write("state.pt", np.random.default_rng(0).bytes(4096)), CORRUPT),
    "empty state.pt": (write("state.pt", b""), CORRUPT),
    "missing state.pt": (lambda folder: (folder / "state.pt").unlink(),
                         "state.pt is missing: the checkpoint is incomplete"),
    "state.pt without weights": (lambda folder: torch.save({"epoch": 1}, folder / "state.pt"),
                                 "state.pt is not a raynas checkpoint: it holds no model state"),
    "meta.json not JSON": (write("meta.json", '{"epoch": 1, "spa'),
                           "meta.json is not readable JSON \\(truncated or corrupt\\)"),
    "meta.json a list": (write("meta.json", "[1, 2]"), "meta.json must hold a JSON object, got list"),
    "meta.json without space": (write("meta.json", json.dumps({"epoch": 1})),
                                r"meta.json lacks key\(s\) \['space', 'space_name', 'data', 'config'\]"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_one_clear_error(checkpoint, damage, tmp_path, capsys):
    harm, message = DAMAGE[damage]
    harm(checkpoint)
    with pytest.raises(ConfigError, match=f"{re.escape(str(checkpoint))}/{message}"):
        load_checkpoint(checkpoint)
    assert main(["score", str(checkpoint), "--all", "--out", str(tmp_path / "x.parquet")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_missing_checkpoint_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{re.escape(str(tmp_path / 'nope'))} is not a raynas checkpoint: the folder "
                                          "does not exist"):
        load_checkpoint(tmp_path / "nope")
