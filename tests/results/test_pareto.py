"""Pareto fronts, hypervolume and the report: against brute force, hand examples and real Parquet."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raynas.cli import main
from raynas.cost import CostModel
from raynas.errors import RaynasError
from raynas.results import ResultsError, ResultStore
from raynas.results.pareto import (
    OBJECTIVE_DIRECTIONS,
    _hv_slicing,
    hypervolume,
    pareto_front,
    pareto_mask,
    reference_point,
)
from raynas.results.report import RunDir, format_table, load_report, plot_front, write_run_metadata
from raynas.space import load_space


def brute_force_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """O(n^2) definition: a row is on the front unless another is no worse everywhere, better somewhere."""
    losses = values * np.array([-1.0 if d == "max" else 1.0 for d in directions])
    keep = np.ones(len(losses), dtype=bool)
    for i, a in enumerate(losses):
        for b in losses:
            if np.all(b <= a) and np.any(b < a):
                keep[i] = False
                break
    return keep


def random_values(rng: np.random.Generator, n: int, k: int, ties: bool) -> np.ndarray:
    """Continuous values, or small integers so that ties and exact duplicates are common."""
    return rng.integers(0, 6, size=(n, k)).astype(float) if ties else rng.random((n, k))


# --- pareto_mask ------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("ties", [False, True])
def test_pareto_mask_matches_brute_force_for_all_direction_mixes(k, ties):
    rng = np.random.default_rng(k * 10 + ties)
    for trial in range(30):
        values = random_values(rng, int(rng.integers(1, 80)), k, ties)
        directions = [str(d) for d in rng.choice(["min", "max"], size=k)]
        np.testing.assert_array_equal(pareto_mask(values, directions), brute_force_mask(values, directions),
                                      err_msg=f"trial {trial}, directions {directions}")


def test_pareto_mask_keeps_duplicates_and_skips_nan_rows():
    values = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [np.nan, 0.0], [0.5, np.nan]])
    assert pareto_mask(values, ["min", "min"]).tolist() == [True, True, False, False, False]


def test_pareto_mask_two_objectives_is_exact_on_1e5_rows():
    """Exact on a large sample; how fast it is belongs in a benchmark, not in a test a loaded machine can fail."""
    values = np.random.default_rng(0).random((100_000, 2))
    mask = pareto_mask(values, ["max", "min"])
    sample = np.random.default_rng(1).choice(len(values), 300, replace=False)
    front = values[mask]
    for i in sample:  # a sampled row is off the front iff some front row dominates it
        a = values[i]
        no_worse = (front[:, 0] >= a[0]) & (front[:, 1] <= a[1])
        dominated = np.any(no_worse & ((front[:, 0] > a[0]) | (front[:, 1] < a[1])))
        assert mask[i] == (not dominated)


def test_pareto_mask_rejects_bad_shapes_and_directions():
    with pytest.raises(ResultsError, match="one direction per objective"):
        pareto_mask(np.zeros((3, 2)), ["min"])
    with pytest.raises(ResultsError, match="direction must be one of"):
        pareto_mask(np.zeros((3, 2)), ["min", "up"])


# --- pareto_front -----------------------------------------------------------------------
def test_pareto_front_drops_failed_and_nan_rows_and_sorts_by_first_objective():
    df = pd.DataFrame({
        "arch": list("abcdef"),
        "status": ["ok", "ok", "ok", "failed", "ok", "ok"],
        "accuracy": [0.9, 0.8, 0.7, 0.99, np.nan, 0.6],
        "flops": [300, 200, 250, 1, 1, 100],
    })
    front = pareto_front(df, ["accuracy", "flops"])
    assert front["arch"].tolist() == ["f", "b", "a"]


def test_unknown_objective_lists_the_valid_ones():
    df = pd.DataFrame({"arch": ["a"], "status": ["ok"], "flops": [1]})
    with pytest.raises(ResultsError, match="unknown objective 'acc'; valid objectives: bn_score, accuracy"):
        pareto_front(df, ["acc", "flops"])


# --- hypervolume ------------------------------------------------------------------------
def test_hypervolume_2d_hand_example():
    # minimise both, reference (4, 4): the staircase of (1,3), (2,2), (3,1) covers 3 + 2 + 1 = 6;
    # (3, 3) is dominated and adds nothing.
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0]])
    assert hypervolume(points, ["min", "min"], [4.0, 4.0]) == pytest.approx(6.0)
    # the same front with the first objective maximised: x' = -x, reference -4
    assert hypervolume(points * [-1, 1], ["max", "min"], [-4.0, 4.0]) == pytest.approx(6.0)


def test_hypervolume_ignores_points_outside_the_reference():
    points = np.array([[1.0, 1.0], [5.0, 0.0]])
    assert hypervolume(points, ["min", "min"], [2.0, 2.0]) == pytest.approx(1.0)


def test_default_reference_is_nadir_pushed_out_by_one_percent_of_the_range():
    points = np.array([[0.9, 100.0], [0.5, 300.0]])  # accuracy (max), flops (min)
    np.testing.assert_allclose(reference_point(points, ["max", "min"]), [0.5 - 0.004, 302.0])
    # (0.9, 100) dominates (0.5, 300): one box from (0.9, 100) to the reference
    assert hypervolume(points, ["max", "min"]) == pytest.approx((0.9 - 0.496) * (302 - 100))


def test_hypervolume_3d_hand_example():
    # two unit-ish boxes against reference (2, 2, 2): [0,2]x[1,2]x[1,2] and [1,2]x[0,2]x[1,2]
    # overlap in [1,2]x[1,2]x[1,2]: 2 + 2 - 1 = 3; a point at (1, 1, 0) adds [1,2]^2 x [0,1] = 1.
    points = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert hypervolume(points, ["min"] * 3, [2.0, 2.0, 2.0]) == pytest.approx(4.0)
    assert _hv_slicing(points, np.array([2.0, 2.0, 2.0])) == pytest.approx(4.0)


@pytest.mark.parametrize("k", [3, 4])
def test_hypervolume_nd_matches_monte_carlo_and_the_slicing_fallback(k):
    rng = np.random.default_rng(k)
    values = rng.random((25, k))
    directions = ["max", "min", "max", "min"][:k]
    ref = reference_point(values, directions)
    exact = hypervolume(values, directions, ref)
    losses = values * np.array([-1.0 if d == "max" else 1.0 for d in directions])
    ref_loss = ref * np.array([-1.0 if d == "max" else 1.0 for d in directions])
    assert _hv_slicing(losses[pareto_mask(losses, ["min"] * k)], ref_loss) == pytest.approx(exact)
    low = losses.min(axis=0)
    samples = low + rng.random((200_000, k)) * (ref_loss - low)
    covered = np.zeros(len(samples), dtype=bool)
    for p in losses:
        covered |= np.all(samples >= p, axis=1)
    estimate = covered.mean() * np.prod(ref_loss - low)
    assert exact == pytest.approx(estimate, rel=0.02)


# --- the report, end to end through real Parquet ----------------------------------------
@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def calibrate_rows(space, n: int = 60, seed: int = 0) -> list[dict]:
    """Distinct random archs with accuracy and their FLOPs and params; every 7th failed, one ok row without accuracy."""
    rng = random.Random(seed)
    archs = list(dict.fromkeys(space.key(space.sample(rng)) for _ in range(4 * n)))[:n]
    costs = CostModel(space).costs([space.arch(a) for a in archs])
    rows = []
    for trial, arch in enumerate(archs):
        row = {"run_id": "run-1", "trial": trial, "arch": arch, "evaluator": "calibrate", "status": "ok",
               "accuracy": rng.random(), "split": "val", "top5": 1.0, "loss": rng.random(),
               "flops": int(costs["flops"][trial]), "params": int(costs["params"][trial])}
        if trial % 7 == 3:
            row = {**{k: row[k] for k in ("run_id", "trial", "arch", "evaluator")}, "status": "failed", "error": "boom"}
        rows.append(row)
    rows[5]["accuracy"] = None
    return rows


def write_run(tmp_path: Path, space, rows: list[dict], with_meta: bool = True) -> Path:
    run = RunDir(tmp_path / "run")
    store = ResultStore(run.results, space)
    store.write_batch(rows[: len(rows) // 2])
    store.write_batch(rows[len(rows) // 2:])
    if with_meta:
        write_run_metadata(run.root, space, run_id="run-1")
    return run.root


def test_report_command_writes_csv_png_and_summary_of_exactly_the_front(tmp_path, tiny, capsys):
    rows = calibrate_rows(tiny)
    bn_rows = [{"run_id": "run-1", "trial": r["trial"], "arch": r["arch"], "evaluator": "bn_score", "status": "ok",
                "bn_score": 1.0, "flops": 1} for r in rows]
    root = write_run(tmp_path, tiny, rows + bn_rows)

    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "evaluator calibrate" in out and "hypervolume:" in out

    ok = [r for r in rows if r["status"] == "ok" and r.get("accuracy") is not None]
    values = np.array([[r["accuracy"], r["flops"]] for r in ok])
    expected = {r["arch"] for r, keep in zip(ok, brute_force_mask(values, ["max", "min"])) if keep}
    report = root / "report"
    with open(report / "front.csv") as f:
        front = list(csv.DictReader(f))
    assert {r["arch"] for r in front} == expected and len(front) == len(expected)
    assert list(front[0])[:3] == ["arch", "accuracy", "flops"]
    assert (report / "pareto.png").read_bytes().startswith(b"\x89PNG")

    summary = json.loads((report / "summary.json").read_text())
    failed = sum(r["status"] == "failed" for r in rows)
    assert summary["status_counts"] == {"failed": failed, "ok": len(rows) - failed}
    assert summary["excluded"] == failed + 1 and summary["usable"] == len(ok)
    cheapest, largest = CostModel(tiny).costs([tiny.min(), tiny.max()])["flops"]
    assert summary["reference"] == pytest.approx([-0.01, largest + 0.01 * (largest - cheapest)])
    assert summary["reference_sources"] == ["bound", "space"]
    assert summary["hypervolume"] == pytest.approx(hypervolume(values, ["max", "min"], summary["reference"]))
    assert f"{summary['excluded']} of {len(rows)} excluded" in out


def test_the_hypervolume_reference_is_fixed_by_the_space_not_the_rows(tmp_path, tiny, capsys):
    rows = [r for r in calibrate_rows(tiny) if r["status"] == "ok"]
    first = load_report(write_run(tmp_path / "a", tiny, rows))
    fewer = load_report(write_run(tmp_path / "b", tiny, rows[: len(rows) // 2]))
    assert first.reference == fewer.reference and first.reference_sources == ("bound", "space")
    assert 0 < fewer.hypervolume_normalized <= first.hypervolume_normalized <= 1  # fewer rows never dominate more

    root = write_run(tmp_path / "c", tiny, rows)
    assert main(["report", str(root), "--reference", "0.5,1e9"]) == 0
    assert "accuracy 0.5 (user), flops 1e+09 (user)" in capsys.readouterr().out
    assert main(["report", str(root), "--reference", "0.5"]) == 2
    assert "--reference needs one value per objective ['accuracy', 'flops'], got [0.5]" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own one-line error
        main(["report", str(root), "--reference", "0.5,big"])
    assert "argument --reference: must be comma-separated numbers" in capsys.readouterr().err


def test_report_with_space_flag_when_run_json_is_missing_and_bn_rows_only(tmp_path, tiny, capsys):
    rows = [{"run_id": "r", "trial": i, "arch": tiny.sample(i), "evaluator": "bn_score", "status": "ok",
             "bn_score": float(i % 5)} for i in range(20)]
    root = write_run(tmp_path, tiny, rows, with_meta=False)
    assert main(["report", str(root)]) == 2
    assert "pass the space" in capsys.readouterr().err

    assert main(["report", str(root), "--space", "tiny", "--objectives", "bn_score,params"]) == 0
    summary = json.loads((root / "report" / "summary.json").read_text())
    assert summary["evaluator"] == "bn_score" and summary["filled_costs"] == 20  # params from the cost model
    assert summary["objectives"] == ["bn_score", "params"]


def test_report_errors_for_missing_dir_empty_results_and_unknown_objective(tmp_path, tiny, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err

    empty = tmp_path / "empty"
    write_run_metadata(empty, tiny)
    assert main(["report", str(empty)]) == 2
    assert "no result rows" in capsys.readouterr().err

    root = write_run(tmp_path, tiny, calibrate_rows(tiny, n=10))
    assert main(["report", str(root), "--objectives", "accuracy,macs"]) == 2
    err = capsys.readouterr().err
    assert "unknown objective 'macs'" in err and ", ".join(OBJECTIVE_DIRECTIONS) in err
    assert main(["report", str(root), "--evaluator", "latency"]) == 2
    assert "evaluators in the results: ['calibrate']" in capsys.readouterr().err


def test_report_with_one_objective_lists_the_best_rows_and_draws_no_plot(tmp_path, tiny):
    root = write_run(tmp_path, tiny, calibrate_rows(tiny, n=20))
    assert main(["report", str(root), "--objectives", "accuracy"]) == 0
    assert not (root / "report" / "pareto.png").exists()
    summary = json.loads((root / "report" / "summary.json").read_text())
    assert summary["front_size"] == 1 and "png" not in summary["files"]


def test_report_without_usable_rows_is_an_error(tmp_path, tiny):
    rows = [{"run_id": "r", "trial": 0, "arch": tiny.min(), "evaluator": "calibrate", "status": "failed"}]
    root = write_run(tmp_path, tiny, rows)
    with pytest.raises(RaynasError, match="no 'calibrate' row has status 'ok'"):
        load_report(root)


def test_plot_and_table_without_a_run_directory(tmp_path):
    df = pd.DataFrame({"arch": ["a", "b", "c"], "status": "ok", "accuracy": [0.5, 0.7, 0.6],
                       "flops": [1e6, 3e6, 4e6], "params": [10_000, 20_000, 30_000]})
    path = plot_front(df, "flops", "accuracy", tmp_path / "deep" / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    table = format_table(pareto_front(df, ["accuracy", "flops"]), ["accuracy", "flops"])
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["#", "arch"] and len(lines) == 4
    assert "50" in lines[2] and "3" in lines[3] and "0.02" in lines[3]


def test_report_of_a_folder_with_two_searches_keeps_one_searchs_rows(tmp_path, tiny, capsys):
    """A front over two searches' union is one no search found: one search at a time."""
    first = calibrate_rows(tiny, n=20, seed=0)
    second = [{**row, "run_id": "run-2", "trial": row["trial"] + 100} for row in calibrate_rows(tiny, n=20, seed=1)]
    root = write_run(tmp_path, tiny, first + second)  # run.json names run-1
    assert set(load_report(root).rows["run_id"]) == {"run-1"}
    assert set(load_report(root, run_id="run-2").rows["run_id"]) == {"run-2"}
    (root / "run.json").unlink()
    assert main(["report", str(root), "--space", "tiny"]) == 2
    assert "several searches ['run-1', 'run-2']; pick one with --run-id" in capsys.readouterr().err
    assert main(["report", str(root), "--space", "tiny", "--run-id", "run-3"]) == 2
    assert "no rows of search 'run-3'" in capsys.readouterr().err
    assert main(["report", str(root), "--space", "tiny", "--run-id", "run-2"]) == 0


# --- run.json holds the model record ------------------------------------------------------------
def test_report_reads_the_space_and_classes_from_the_model_record_in_run_json(tmp_path, tiny):
    from raynas.model_record import DataInfo, ModelRecord

    rows = calibrate_rows(tiny)
    for row in rows:
        row.pop("params", None)  # costs the rows lack come from the record's space and classes
    root = write_run(tmp_path, tiny, rows, with_meta=False)
    record = ModelRecord.of(tiny, DataInfo("digits", 3, 1, 8, (0.5,), (0.25,), hflip=False))
    write_run_metadata(root, record, run_id="run-1")
    meta = json.loads((root / "run.json").read_text())
    assert meta["model"] == record.to_dict() and "space" not in meta  # the space is stored once, in the record

    report = load_report(root, objectives=["accuracy", "params"])
    assert report.space.definition == tiny.definition
    expected = CostModel(tiny, 3, 1).costs([tiny.arch(a) for a in report.rows["arch"]])["params"]
    assert report.rows["params"].tolist() == expected.tolist()  # filled in for 3 classes, not the default 10


def test_a_malformed_model_record_in_run_json_is_a_clear_error(tmp_path, tiny, capsys):
    root = write_run(tmp_path, tiny, calibrate_rows(tiny, n=10), with_meta=False)
    (root / "run.json").write_text(json.dumps({"model": {"space": tiny.definition, "space_name": "tiny"}}))
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "model lacks key(s) ['data', 'bn_layout']" in err
