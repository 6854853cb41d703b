"""The main job's picture: the search's BN-score (or estimator) stage beside the retrained models' top-1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def plot_main_job(rows: pd.DataFrame, cost_name: str, baselines: list[dict[str, Any]], path: Path) -> Path:
    """Left: every searched child (cost vs BN score, or the estimator's score). Right: shortlist (val
    top-1 after short training), final models (val and test top-1), and the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ok = rows[rows["status"] == "ok"]
    for column, label in (("bn_score", "BN score"), ("estimate", "estimator's score")):
        scored = ok[ok["evaluator"] == column]  # each of these evaluators fills the column of its name
        if len(scored):
            left.scatter(scored[cost_name], scored[column], s=6, alpha=0.4, label=f"searched ({label})")
            left.set_ylabel(label)
            break
    calibrated = ok[ok["evaluator"] == "calibrate"]
    if len(calibrated) and not len(scored):
        left.scatter(calibrated[cost_name], calibrated["accuracy"], s=10, alpha=0.5, label="calibrated (val)")
        left.set_ylabel("val top-1, calibrated supernet child")
    left.set_xlabel(cost_name)
    left.set_title("search stage")
    left.legend(loc="lower right", fontsize=8)
    for stage, marker, label in (("short_train", "o", "short training (val)"),
                                 ("final_train", "s", "full training (val)"), ("test", "*", "final model (test)")):
        part = ok[ok["evaluator"] == stage]
        if len(part):
            right.scatter(part[cost_name], part["accuracy"], marker=marker, s=60 if marker == "*" else 25,
                          label=label, zorder=3)
    for baseline in baselines:
        right.axhline(baseline["test_accuracy"], linestyle="--", color="grey", linewidth=1)
        right.annotate(f"{baseline['model']} (test)", (0.02, baseline["test_accuracy"]),
                       xycoords=("axes fraction", "data"), fontsize=8, va="bottom")
    right.set_xlabel(cost_name)
    right.set_ylabel("top-1")
    right.set_title("retrained / deployed models")
    right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
