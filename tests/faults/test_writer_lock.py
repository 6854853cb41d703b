"""One writer per output for every writing command: a second writer is refused before anything runs,
by one line naming the holder; a lock left by a killed process is taken over, with a line saying so.

The holder is a real process that took the command's lock through the same code path as ``main``
(``writer_lock`` of the command's parsed arguments) and sleeps; it is killed by its recorded PID.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from raynas.cli import main
from raynas.cli.main import build_parser

HOLDER = """
import sys, time
from raynas.cli.main import build_parser
from raynas.cli.writer_lock import writer_lock
args = build_parser().parse_args(sys.argv[1:])
with writer_lock(args):
    print("locked", flush=True)
    time.sleep(600)
"""


def commands(tmp: Path) -> dict[str, list[str]]:
    """One writing invocation of each command, all of whose inputs are checked only after the lock."""
    return {
        "run": ["run", "--out", str(tmp / "run")],
        "train": ["train", "tiny", "--out", str(tmp), "--name", "named"],
        "retrain": ["retrain", "tiny", "--arch", "x", "--out", str(tmp), "--name", "again"],
        "search": ["search", "nb201", "--evaluator", "naswot", "--out", str(tmp / "search")],
        "proxy": ["proxy", "nb201", "--archs", str(tmp / "cells.csv"), "--out", str(tmp / "proxy")],
        "score folder": ["score", "nb201", "--sample", "2", "--out", str(tmp / "scores")],
        "score file": ["score", "nb201", "--sample", "2", "--out", str(tmp / "scores.parquet")],
        "bpe": ["bpe", "space.yaml", "--reference", "ref.csv", "--out", str(tmp / "bpe")],
        "calibrate": ["calibrate", str(tmp / "ckpt"), "--sample", "2", "--out", str(tmp / "calibrated.parquet")],
        "export": ["export", str(tmp / "ckpt"), "--arch", "x", "--out", str(tmp / "model")],
        "latency": ["latency", "tiny", "--out", str(tmp / "latency.json")],
    }


def hold(argv: list[str]) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, *argv], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def stop(holder: subprocess.Popen) -> None:
    holder.kill()  # by the PID this test started
    holder.wait()


FAST = ("proxy", "score file")
"""Kept in the default run; the other commands' cases run with the slow marker."""


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in commands(Path("/x"))])
def test_a_second_writer_is_refused_by_one_line_before_anything_starts(tmp_path, name, capsys):
    argv = commands(tmp_path)[name]
    holder = hold(argv)
    try:
        assert main(argv) == 2
    finally:
        stop(holder)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"is in use by another raynas {argv[0]} (pid {holder.pid} on " in err[0]
    assert not ray.is_initialized()  # refused before Ray started


def test_a_lock_left_by_a_killed_writer_is_taken_over_and_said(tmp_path, capsys):
    argv = ["score", "nb201", "--estimator", "params", "--sample", "3", "--out", str(tmp_path / "scores")]
    stop(hold(argv))
    lock = tmp_path / "scores" / ".raynas.lock"
    assert json.loads(lock.read_text())["command"] == "raynas score"  # the dead holder's record is still there
    assert main(argv) == 0
    assert "taking over the lock of a raynas score that did not end cleanly (pid" in capsys.readouterr().err
    assert lock.read_text() == ""  # a clean end empties the record it took over
    assert (tmp_path / "scores" / "scores.parquet").is_file()


def test_writers_of_other_names_and_new_runs_do_not_collide(tmp_path):
    from raynas.cli.writer_lock import output_of

    parser = build_parser()
    assert output_of(parser.parse_args(["train", "tiny", "--out", str(tmp_path)])) is None  # a fresh folder each
    assert output_of(parser.parse_args(["train", "tiny", "--out", str(tmp_path), "--name", "a"])) == tmp_path / "a"
    assert output_of(parser.parse_args(["search", "nb201", "--out", str(tmp_path), "--new-run"])) is None


def test_a_refused_input_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "deep" / "scores"
    assert main(["score", "nb201", "--estimator", "magic", "--sample", "2", "--out", str(out)]) == 2
    assert "unknown estimator 'magic'" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists()
    assert os.listdir(tmp_path) == []
