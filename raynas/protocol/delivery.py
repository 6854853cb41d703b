"""Hand the final models over: test top-1 (read once each), export, Parquet rows, table and plot."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from raynas.atomic import write_atomic
from raynas.data import DataSplits
from raynas.deploy import ship_child
from raynas.protocol.final import FinalModel, TestSplit, logistic_regression_baseline
from raynas.results import ResultStore
from raynas.search.costs import CheapObjectives
from raynas.space import SearchSpace
from raynas.train.checkpoint import DataInfo

TEST = "test"
MODELS_DIR = "models"
SUMMARY_FILE = "final.json"
TEST_LEDGER = "test_reads.json"


def deliver(space: SearchSpace, data: DataSplits, finals: Sequence[FinalModel], cost_name: str, run_dir: Path,
            store: ResultStore, cheap: CheapObjectives, bn_layout: str,
            stage_seconds: dict[str, float] | None = None, estimator: str | None = None,
            selection: Mapping[str, object] | None = None) -> pd.DataFrame:
    """Measure every final model on the test split once, export it, record it; returns the table.
    ``estimator``: the expression the search ranked children by (None: the BN indicator, or calibration);
    ``selection``: how the models were chosen (``Funnel.to_dict``), kept whole in ``final.json``."""
    test = TestSplit(data, ledger=run_dir / TEST_LEDGER)
    tested = _tested(store)
    info = DataInfo.of(data)
    rows, table = [], []
    costs = cheap([space.arch(f.arch) for f in finals])
    for i, final in enumerate(finals):
        arch = space.arch(final.arch)
        accuracy = test.top1(final.child, f"{final.target}:{final.arch}", space.resolution(arch))
        cost = {k: (int(v[i]) if k in ("flops", "params") else float(v[i])) for k, v in costs.items()}
        folder = run_dir / MODELS_DIR / f"{i + 1}-{cost_name}-{_short(final.target)}"
        metrics = {"val_top1": final.val_accuracy, "test_top1": accuracy, "train_seconds": final.seconds,
                   "target": {cost_name: final.target}, "how": final.how, **cost}
        ship_child(final.child, space, arch, folder, info, bn_layout, metrics)
        now = time.time()
        rows.append({"run_id": TEST, "trial": i, "arch": final.arch, "status": "ok", "evaluator": TEST,
                     "accuracy": accuracy, "split": TEST, "target": final.target, "eval_seconds": final.seconds,
                     "started_at": now, "finished_at": now, **cost})
        table.append({"target": final.target, "arch": final.arch, **cost, "val_top1": final.val_accuracy,
                      "test_top1": accuracy, "train_s": final.seconds, "how": final.how, "model": str(folder)})
    store.write_batch([r for r in rows if (r["target"], r["arch"]) not in tested])  # a rerun adds none twice
    frame = pd.DataFrame(table)
    baseline = logistic_regression_baseline(data)
    summary = {"cost": cost_name, "estimator": estimator, "models": table, "baselines": [baseline] if baseline else [],
               "test_reads": len(test.reads), "test_images": len(data.test), "stage_seconds": stage_seconds or {},
               "selection": selection}
    text = json.dumps(summary, indent=2, default=float)
    write_atomic(run_dir / SUMMARY_FILE, lambda tmp: tmp.write_text(text))
    return frame


def _tested(store: ResultStore) -> set[tuple[float, str]]:
    """(target, arch) of the test rows an earlier attempt of this run wrote."""
    table = store.to_pandas()
    if not len(table):
        return set()
    rows = table[table["evaluator"] == TEST]
    return {(float(t), a) for t, a in zip(rows["target"], rows["arch"])}


def format_final_table(frame: pd.DataFrame, cost_name: str, test_reads: int | None = None) -> str:
    """The table a user reads at the end: one line per target, test top-1 shown once, then how
    each model was chosen; and, when an earlier attempt read the test split too, how often it was read."""
    header = f"{'target':>10} {cost_name:>10} {'params':>8} {'val top-1':>9} {'test top-1':>10} {'train s':>8}  arch"
    lines = [header]
    for row in frame.to_dict("records"):
        lines.append(f"{_short(row['target']):>10} {_short(row[cost_name]):>10} {_short(row['params']):>8} "
                     f"{row['val_top1']:>9.4f} {row['test_top1']:>10.4f} {row['train_s']:>8.1f}  {row['arch']}")
    lines += [f"  {_short(row['target'])}: {row['how']}" for row in frame.to_dict("records") if row.get("how")]
    if test_reads is not None and test_reads > len(frame):
        lines.append(f"  the test split was read {test_reads} times for {len(frame)} models: an attempt that "
                     f"crashed had read it (see {TEST_LEDGER})")
    return "\n".join(lines)


def _short(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"
