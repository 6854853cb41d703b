"""`raynas train --max-failures`: a lost worker restarts from the latest checkpoint, and says so."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ray._private.state import actors
from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

from raynas.cli import main
from raynas.cli.main import build_parser
from raynas.cli.train_cmd import max_failures
from raynas.errors import ConfigError
from raynas.train.checkpoint import read_meta


@pytest.mark.parametrize("command", [["train", "tiny"], ["run"]])
def test_max_failures_defaults_to_none_locally_and_three_on_a_cluster(command, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    parse = build_parser().parse_args
    assert max_failures(parse(command)) == 0
    assert max_failures(parse([*command, "--address", "auto"])) == 3
    assert max_failures(parse([*command, "--address", "auto", "--max-failures", "1"])) == 1
    with pytest.raises(ConfigError, match="--max-failures must be >= 0, got -1"):
        max_failures(parse([*command, "--max-failures", "-1"]))
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert max_failures(parse(command)) == 3


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def train_worker_pids() -> list[int]:
    """PIDs of this Ray instance's live Ray Train workers (started by this test's training)."""
    alive = actors(actor_state_name="ALIVE").values()
    return [actor["Pid"] for actor in alive if actor["ActorClassName"].endswith("RayTrainWorker")]


def registered_checkpoints(run_dir: Path) -> int:
    """Checkpoints Ray Train's controller has taken in: a restart resumes from the latest of them.

    Workers write a checkpoint; the controller, polling every 2 s, registers it afterwards, and a
    worker lost in between restarts from the checkpoint before.
    """
    try:
        return len(json.loads((run_dir / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME).read_text())["checkpoint_results"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


@pytest.mark.slow
def test_cli_train_survives_a_killed_worker_and_shows_the_restart(ray_local, tmp_path, capsys):
    epochs = 4
    outcome: dict[str, Any] = {}

    def train() -> None:
        try:
            outcome["code"] = main(["train", "tiny", "--data", "digits", "--epochs", str(epochs), "--batch-size", "32",
                                    "--train-images", "768", "--workers", "2", "--max-failures", "1",
                                    "--out", str(tmp_path), "--name", "lost"])
        except BaseException as err:  # re-raised below
            outcome["error"] = err

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    wait_for(lambda: registered_checkpoints(tmp_path / "lost") >= 1 or not thread.is_alive(), 300,
             "the first epoch's checkpoint")
    assert thread.is_alive() and registered_checkpoints(tmp_path / "lost") < epochs, \
        "training ended before a worker was killed"
    pids = train_worker_pids()
    assert len(pids) == 2, pids
    os.kill(pids[-1], signal.SIGKILL)
    thread.join(timeout=420)
    assert not thread.is_alive(), "training did not finish after losing a worker"
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["code"] == 0
    shown = capsys.readouterr().out
    assert re.search(r"\[raynas\] training worker lost or failed; restarting from checkpoint epoch [1-3] "
                     r"\(restart 1/1\)", shown), shown
    shown_epochs = [int(e) for e in re.findall(r"\[raynas\] epoch (\d)/4", shown)]
    assert set(shown_epochs) == {1, 2, 3, 4} and shown_epochs[-1] == 4  # an unregistered epoch runs again
    assert f"trained tiny (bn_only) for {epochs} epochs" in shown
    checkpoint = re.search(r"checkpoint: (\S+)", shown).group(1)
    assert read_meta(checkpoint)["epoch"] == epochs
