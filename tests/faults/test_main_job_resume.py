"""``kill -9``, SIGTERM and Ctrl-C to ``raynas run`` at stage boundaries, then a rerun in the same folder.

One run folder goes through every boundary in turn: the driver is started, killed (by the PID
this test recorded) as soon as it logs that a stage is over, and started again, until an attempt
finishes. The drivers join this module's private Ray cluster by address, so the kills never touch
another Ray instance. What must hold at the end: one row per candidate per stage, each winner
trained in full once and tested once, ``test_reads`` equal to the reads the ledger recorded over
every attempt, and ``final.json`` consistent with ``results/``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.faults.test_fault_injection import kill_pid

pytestmark = pytest.mark.slow

SMALL = ["--space", "tiny", "--data", "synthetic", "--workers", "0", "--epochs", "1", "--trials", "60",
         "--search-batch", "30", "--actors", "1", "--calib-images", "32", "--targets", "2", "--per-target", "3",
         "--short-epochs", "2", "--final-epochs", "2"]
BOUNDARIES = ["2/4 search", "shortlist:", "full training of", "shipped"]
"""Lines the main job logs once a stage is over: after training, the search, the shortlist, the first export."""


def attempt(out: Path, address: str, log: Path, kill_after: str | None, sig: int = signal.SIGKILL) -> int:
    """One ``raynas run``; with ``kill_after``, sent ``sig`` as soon as it logs that line. Returns its exit code."""
    command = [sys.executable, "-m", "raynas", "run", *SMALL, "--out", str(out), "--address", address]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(log, "a") as record:
        driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        assert driver.stdout is not None
        for line in driver.stdout:
            record.write(line)
            if kill_after and kill_after in line:
                if sig == signal.SIGKILL:
                    kill_pid(driver.pid)
                    break
                os.kill(driver.pid, sig)  # the driver this test started, by its recorded PID
                kill_after = None  # then read on: it must stop by itself
        driver.stdout.close()
        return driver.wait(timeout=300)


@pytest.mark.timeout(900)
def test_a_run_killed_at_every_stage_boundary_resumes_and_reads_the_test_split_honestly(cluster, tmp_path):
    out, log = tmp_path / "run", tmp_path / "driver.log"
    for boundary in BOUNDARIES:
        assert attempt(out, cluster.address, log, boundary) == -9, f"the run ended before '{boundary}'; see {log}"
    assert attempt(out, cluster.address, log, None) == 0, f"the last attempt failed; see {log}"

    rows = pd.read_parquet(out / "results")
    summary = json.loads((out / "final.json").read_text())
    short, final, test = (rows[rows["evaluator"] == s] for s in ("short_train", "final_train", "test"))
    winners = {m["arch"] for m in summary["models"]}
    assert short["arch"].is_unique and len(short) == 6  # 3 candidates x 2 targets, none trained twice
    assert final["arch"].is_unique and set(final["arch"]) == winners  # no winner retrained after the kills
    assert len(test) == len(summary["models"]) == len(winners)  # one test row per model, over all attempts
    ledger = json.loads((out / "test_reads.json").read_text())["reads"]
    assert summary["test_reads"] == len(ledger) >= len(summary["models"])
    recorded = {e["model"]: e["accuracy"] for e in ledger if e["accuracy"] is not None}
    for model in summary["models"]:
        assert recorded[f"{model['target']}:{model['arch']}"] == pytest.approx(model["test_top1"])
        row = test[(test["arch"] == model["arch"]) & (test["target"] == model["target"])]
        assert len(row) == 1 and row["accuracy"].iloc[0] == pytest.approx(model["test_top1"])
    searched = rows[rows["evaluator"] == "bn_score"]
    assert searched["arch"].is_unique and summary["selection"]["prescreened"] == searched["arch"].nunique()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig, boundary, code, said", [
    (signal.SIGTERM, "2/4 search", 143, "terminated (SIGTERM)"),  # evaluator actors at work
    (signal.SIGINT, "shortlist:", 130, "interrupted (Ctrl-C)"),  # Ray Tune trials at work
])
def test_sigterm_and_ctrl_c_stop_cleanly_and_the_rerun_resumes(cluster, tmp_path, sig, boundary, code, said):
    out, log = tmp_path / "run", tmp_path / "driver.log"
    assert attempt(out, cluster.address, log, boundary, sig) == code, f"see {log}"
    text = log.read_text()
    last = text.strip().splitlines()[-1]
    assert last == f"raynas run: {said}; what finished is kept in {out}: run the same command again to resume", text
    for crash in ("Aborted", "core dumped", "Fatal Python error", "Traceback"):
        assert crash not in text, f"{crash!r} in the output of a stopped run; see {log}"
    assert not (out / ".raynas.lock").exists()  # the writer lock went with it
    assert attempt(out, cluster.address, log, None) == 0, f"the rerun failed; see {log}"
    summary = json.loads((out / "final.json").read_text())
    assert summary["test_reads"] == len(summary["models"])
