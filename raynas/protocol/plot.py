"""The main job's picture: the funnel over the cost axis beside the retrained models' top-1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def plot_main_job(rows: pd.DataFrame, cost_name: str, baselines: list[dict[str, Any]], path: Path,
                  selection: dict[str, Any] | None = None) -> Path:
    """Left: the funnel over the cost axis: every searched child (cost vs BN score, or the
    estimator's score), the candidates by the last ASHA rung they reached, the survivors, and the
    targets as vertical lines (from ``selection``, ``Funnel.to_dict``). Right: candidates (val top-1
    after short training), final models (val and test top-1), and the baselines as horizontal lines."""
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
    if len(scored) and selection:
        _draw_funnel(left, ok, scored, column, cost_name, selection)
    calibrated = ok[ok["evaluator"] == "calibrate"]
    if len(calibrated) and not len(scored):
        left.scatter(calibrated[cost_name], calibrated["accuracy"], s=10, alpha=0.5, label="calibrated (val)")
        left.set_ylabel("val top-1, calibrated supernet child")
    left.set_xlabel(cost_name)
    left.set_title("search and selection funnel" if selection else "search stage")
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


def _draw_funnel(axes, ok: pd.DataFrame, scored: pd.DataFrame, column: str, cost_name: str,
                 selection: dict[str, Any]) -> None:
    """Candidates by the epochs they trained (the last ASHA rung they reached), survivors ringed,
    budgets as dotted lines."""
    position = scored.drop_duplicates("arch").set_index("arch")[[cost_name, column]]
    short = ok[(ok["evaluator"] == "short_train") & ok["arch"].isin(position.index)]
    for target in selection["targets"]:
        axes.axvline(target["target"], linestyle=":", color="grey", linewidth=1)
    for i, epochs in enumerate(sorted(short["epochs"].astype(int).unique())):
        archs = short.loc[short["epochs"] == epochs, "arch"]
        axes.scatter(position.loc[archs, cost_name], position.loc[archs, column], s=18 + 12 * i,
                     zorder=3, label=f"candidates, trained {epochs} epochs")
    winners = [t["winner"] for t in selection["targets"] if t["winner"] in position.index]
    axes.scatter(position.loc[winners, cost_name], position.loc[winners, column], s=140, facecolors="none",
                 edgecolors="black", linewidths=1.5, zorder=4, label=f"retrained {selection['final_epochs']} epochs")
