"""What minimum importance pruning saves: a MIP run against a run of the same BPE space without pruning.

    raynas bpe search_spaces/bpe/nb201_cifar10_bpe.yaml ... --out benchmarks/out/bpe_nb201          # MIP
    raynas bpe search_spaces/bpe/nb201_cifar10_bpe.yaml ... --rounds 1 --trials-per-round 18 \\
        --out benchmarks/out/bpe_nb201_nopruning                                                     # no pruning
    python -m benchmarks.mip_savings --mip benchmarks/out/bpe_nb201 --baseline benchmarks/out/bpe_nb201_nopruning

Both runs train the same search cells under settings an Optuna sampler picks; MIP fixes the least
important hyper-parameter at its cheapest value after each round, the baseline never does. Per run:
trials, total CPU seconds of training (CPU seconds per cell x cells: unmoved by other
processes; a run made before trials weighed CPU seconds logged wall seconds as ``cost_seconds``), the best Spearman overall and within ``--budget`` CPU-s per cell, and the CPU seconds
spent (trials in order) until the run first reached the target Spearman, the best within budget
that both runs reached. Writes ``benchmarks/out/mip_savings.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import table, write_json
from raynas.bpe import read_trials


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mip", type=Path, required=True, help="output folder of a raynas bpe run with pruning")
    parser.add_argument("--baseline", type=Path, required=True, help="the same BPE space run without pruning")
    parser.add_argument("--budget", type=float, default=20.0, help="CPU seconds per cell a proxy may cost")
    parser.add_argument("--metric", default="rho", choices=["rho", "tau"])
    return parser.parse_args()


def trials_of(folder: Path) -> pd.DataFrame:
    frame = read_trials(folder).to_pandas().sort_values("trial").reset_index(drop=True)
    frame = frame[frame["status"] == "ok"]
    cpu = frame["seconds_per_arch"] * frame["num_reference"]  # CPU s: runs before CPU costing logged wall s as cost
    return frame.assign(cpu_seconds=cpu, cumulative_cpu_s=cpu.cumsum())


def summary(name: str, trials: pd.DataFrame, metric: str, budget: float, target: float) -> dict[str, Any]:
    within = trials[trials["seconds_per_arch"] <= budget]
    reached = trials[trials[metric] >= target - 1e-12]
    first = reached.iloc[0] if len(reached) else None
    return {
        "run": name, "trials": len(trials), "total CPU s": float(trials["cpu_seconds"].sum()),
        f"best {metric}": float(trials[metric].max()),
        f"best {metric} <= {budget:g} s/cell": float(within[metric].max()) if len(within) else np.nan,
        "first reached at trial": int(first["trial"]) if first is not None else None,
        "CPU s to reach it": float(first["cumulative_cpu_s"]) if first is not None else np.nan,
        "mean s/cell": float(trials["seconds_per_arch"].mean()),
    }


def main() -> None:
    args = parse_args()
    runs = {"MIP": trials_of(args.mip), "no pruning": trials_of(args.baseline)}
    within = [t.loc[t["seconds_per_arch"] <= args.budget, args.metric].max() for t in runs.values()]
    target = float(min(within))
    rows = [summary(name, trials, args.metric, args.budget, target) for name, trials in runs.items()]
    mip, base = rows
    saved = {"target": target,
             "CPU s saved to reach the target": base["CPU s to reach it"] - mip["CPU s to reach it"],
             "total CPU s saved": base["total CPU s"] - mip["total CPU s"],
             "total CPU ratio (MIP / no pruning)": mip["total CPU s"] / base["total CPU s"]}
    print(f"target {args.metric}: {target:.3f} (the best within {args.budget:g} CPU-s per cell that both runs reached)")
    print(table(rows, list(rows[0])))
    print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in saved.items()))
    path = write_json("mip_savings", {"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows, **saved})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
