"""What cell a raynas search finds on NAS-Bench-201, against random search and the #params pick.

    python -m benchmarks.nb201_search                         # 5 seeds, the shipped config, dev pool
    python -m benchmarks.nb201_search --seeds 0,1 --budget 600

Each seed runs ``raynas search nb201 --config search_spaces/configs/nb201_search.yaml --pool DEV``
(the 1,000 cells of ``nb201_cifar10_dev.csv``, given as keys only: the search never sees their
accuracy), and random search with the same proxy and budget: cells of the pool in a seeded random
order, each trained at the last rung's fidelity until the budget is spent, the best by the same
score. The table gives each found cell's true 200-epoch CIFAR-10 accuracy, its percentile in the
pool, and the CPU-seconds spent, beside the pool's #params pick and its best cell.

Only the shipped config's settings were chosen on this table (see its header), so the figures
measure that config on the cells it was tuned on; ``--pool`` with another table measures it on others.

Prints a table and writes ``benchmarks/out/nb201_search.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import OUT, ROOT, cifar_spec, table, write_json
from raynas.cli import main
from raynas.cost import CostModel
from raynas.space import load_space

DEV_CSV = ROOT.parent / "shared" / "data" / "nb201_cifar10_dev.csv"
CONFIG = ROOT / "search_spaces" / "configs" / "nb201_search.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--budget", type=float, default=None, help="CPU-seconds per search (default: the config's)")
    parser.add_argument("--csv", type=Path, default=DEV_CSV, help="pool with true accuracies")
    parser.add_argument("--column", default="cifar10_test_acc_200ep")
    parser.add_argument("--out", type=Path, default=OUT / "nb201_search")
    parser.add_argument("--methods", default="funnel,random")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: tabulate the searches under --out that have a chosen.json")
    return parser.parse_args()


def search(method: str, seed: int, args: argparse.Namespace, pool: Path,
           config: dict[str, Any]) -> dict[str, Any] | None:
    """One search; its chosen.json (rerunning a finished one reads it back; None: not run, with --report-only)."""
    out = args.out / f"{method}-s{seed}"
    argv = ["search", "nb201", "--config", str(args.config), "--pool", str(pool), "--search-seed", str(seed),
            "--data", cifar_spec(), "--out", str(out), "-q"]
    if args.budget is not None:
        argv += ["--budget-cpu-s", str(args.budget)]
    if method == "random":
        last = str(config["rung-epochs"]).split(",")[-1]
        argv += ["--evaluator", "random", "--rung-epochs", last, "--candidates", "100000", "--prescreen-share", "0"]
    started = time.perf_counter()
    if args.report_only:
        if not (out / "chosen.json").is_file():
            return None
        chosen = json.loads((out / "chosen.json").read_text())
        return {**chosen, "bench_wall_s": chosen["wall_seconds"]}
    if main(argv) != 0:
        raise SystemExit(f"{method} seed {seed} failed")
    return {**json.loads((out / "chosen.json").read_text()), "bench_wall_s": time.perf_counter() - started}


def rung_quality(args: argparse.Namespace, accuracy: dict[str, float]) -> list[dict[str, Any]]:
    """Which early score ranks better (the issue's "TSE or validation accuracy"): per stage, the
    Spearman of the prescreen score and of each proxy score against the truth, mean over seeds."""
    from scipy.stats import spearmanr

    found: dict[tuple[str, str], list[dict[str, float]]] = {}
    for folder in sorted(args.out.glob("*-s*")):
        if not (folder / "chosen.json").is_file():
            continue  # not finished
        method = folder.name.rsplit("-s", 1)[0]
        rows = pd.read_parquet(folder / "funnel.parquet")
        prescreen = rows[rows["stage"] == "prescreen"].set_index("arch")["score"]
        for rung, trained in rows[rows["stage"] == "rung"].groupby("rung"):
            truth = trained["arch"].map(accuracy).to_numpy(float)
            if len(trained) < 3:
                continue
            scores = {"prescreen": trained["arch"].map(prescreen).to_numpy(float),
                      "proxy_accuracy": trained["proxy_accuracy"].to_numpy(float),
                      "tse": -trained["tse"].to_numpy(float), "tse_e": -trained["tse_e"].to_numpy(float)}
            found.setdefault((method, f"rung {rung}"), []).append(
                {"cells": len(trained), **{k: float(spearmanr(v, truth)[0]) if np.isfinite(v).all() else np.nan
                                           for k, v in scores.items()}})
    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return [{"method": method, "stage": stage, **{k: mean([r[k] for r in got]) for k in got[0]}}
            for (method, stage), got in found.items()]


def main_() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(args.config.read_text())
    truth = pd.read_csv(args.csv)[["arch", args.column]].rename(columns={args.column: "accuracy"})
    pool = args.out / "pool.csv"
    truth[["arch"]].to_csv(pool, index=False)  # keys only: the search cannot read an accuracy
    accuracy = dict(zip(truth["arch"], truth["accuracy"]))
    values = np.sort(truth["accuracy"].to_numpy(float))

    def judged(method: str, seed: int | None, arch: str, cpu: float | None, wall: float | None) -> dict[str, Any]:
        acc = accuracy[arch]
        return {"method": method, "seed": seed, "accuracy": acc,
                "percentile": 100.0 * np.searchsorted(values, acc, side="right") / len(values),
                "cpu_s": cpu, "wall_s": wall, "arch": arch}

    space = load_space("nb201")
    params = CostModel(space).costs([space.arch(a) for a in truth["arch"]])["params"]
    rows = [judged("#params pick", None, truth["arch"].iloc[int(np.argmax(params))], 0.0, None),
            judged("pool best", None, truth.loc[truth["accuracy"].idxmax(), "arch"], None, None)]
    runs: list[dict[str, Any]] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in args.methods.split(","):
            chosen = search(method, seed, args, pool, config)
            if chosen is None:
                continue
            runs.append({**judged(method, seed, chosen["arch"], chosen["cpu_seconds"], chosen["bench_wall_s"]),
                         "chosen": chosen})
            print(table([{k: v for k, v in runs[-1].items() if k != "chosen"}],
                        ["method", "seed", "accuracy", "percentile", "cpu_s", "wall_s"]), flush=True)
            write_json("nb201_search", {"config": config, "runs": runs, "baselines": rows})
    summary = []
    for method in args.methods.split(","):
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        acc = np.array([r["accuracy"] for r in mine])
        summary.append({"method": method, "seeds": len(mine), "mean": acc.mean(), "std": acc.std(ddof=1) if len(acc) > 1
                        else 0.0, "min": acc.min(), "max": acc.max(),
                        "percentile": float(np.mean([r["percentile"] for r in mine])),
                        "cpu_s": float(np.mean([r["cpu_s"] for r in mine])),
                        "wall_s": float(np.mean([r["wall_s"] for r in mine]))})
    summary += [{"method": r["method"], "seeds": "", "mean": r["accuracy"], "percentile": r["percentile"],
                 "cpu_s": r["cpu_s"]} for r in rows]
    print(table(summary, ["method", "seeds", "mean", "std", "min", "max", "percentile", "cpu_s", "wall_s"]))
    quality = rung_quality(args, accuracy)
    print("\nSpearman of each score against the true accuracy, over the cells each stage scored (mean over seeds):")
    print(table(quality, ["method", "stage", "cells", "prescreen", "proxy_accuracy", "tse", "tse_e"]))
    path = write_json("nb201_search", {"config": config, "runs": runs, "baselines": rows, "summary": summary,
                                       "rung_quality": quality})
    print(f"wrote {path}")


if __name__ == "__main__":
    main_()
