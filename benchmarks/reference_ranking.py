"""Every estimator against NAS-Bench-201's own 200-epoch CIFAR-10 accuracy, with top-k quality.

    python -m benchmarks.reference_ranking                               # cost-model and step-0 rankers
    python -m benchmarks.reference_ranking --proxy benchmarks/out/proxy_rank \\
        --checkpoint runs/nb201-bn/checkpoint_epoch_0005                   # add proxies and a trained supernet

The reference is ``nb201_cifar10_dev.csv`` (1,000 cells; ``--csv``/``--column`` for another
table). Each ranker scores the cells it can; per ranker the table shows Kendall tau and Spearman
rho with 95% bootstrap intervals (resampling cells), and what a search that keeps its top picks
would get: the true accuracy of its top-1 and the mean of its top-10, each with its percentile
among all reference cells (``raynas.bpe.ranking``). ``--held-out N`` (default 200, seed
``--split-seed``) restricts every ranker to the N cells that a BPE search must not look at, so
this table and ``raynas bpe``'s judge the same cells.

Rankers:

- ``#params``, ``FLOPs``: the analytic cost model (no training; NAS-Bench-201's own widths);
- ``bn_score @ step 0``: the BN indicator of an untrained supernet, a count of BN-owning ops;
- ``bn_score (<rule>) @ <checkpoint>``: the BN indicator of each ``--checkpoint`` (a BN-only
  supernet), under each depth rule;
- ``calibrated accuracy @ <checkpoint>``: BN-calibrated val top-1 of each ``--calibrated``
  checkpoint (a fully trained supernet), on ``--calibrated-cells`` of the cells (it costs a
  calibration and an evaluation per cell);
- every score column of each ``--scores`` CSV (``benchmarks.nb201_supernet`` writes one with a
  BigNAS supernet's calibrated accuracy and BN-only supernets' indicators at a reduced skeleton);
- ``proxy <setting>``: every proxy setting found in each ``--proxy`` folder (``proxy.parquet``
  of ``raynas proxy``), on the cells it trained;
- every estimator column of each ``--score-file`` (the Parquet of ``raynas score``), each
  ``--fuse`` expression derived from its columns, and with ``--select-fusion A,B,...`` every
  fusion of those members judged on the search cells, the best one then judged on the cells
  it was not chosen on;
- with ``--ranker-features``, the learned ranker (``raynas ranker fit``) by ``--folds``-fold
  cross-validation and trained on ``--train-cells`` cells, tested on the rest.

Every ranker also gets top-5% precision and the top-k mean with bootstrap intervals, and its
CPU-seconds per cell (``benchmarks.estimator_ranking``).

    python -m benchmarks.reference_ranking --held-out 0 --score-file benchmarks/out/nb201_dev_scores/scores.parquet \
        --select-fusion naswot,jacov,synflow,zico,flops --ranker-features naswot,synflow,zico,jacov,flops

Prints a table and writes ``benchmarks/out/reference_ranking.json``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import estimator_ranking as er
from benchmarks.common import ROOT, table, write_json
from raynas.bpe import load_reference_column, read_proxy_rows
from raynas.bpe.proxy import IDENTITY
from raynas.bpe.proxy_setting import KEYS
from raynas.bpe.ranking import holdout_split, ranking_quality
from raynas.cost import CostModel
from raynas.data import load_data
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.space import SearchSpace, load_space
from raynas.supernet import build_supernet
from raynas.train import load_checkpoint

DEV_CSV = ROOT.parent / "shared" / "data" / "nb201_cifar10_dev.csv"
Scores = dict[str, float]  # arch key -> score (higher = predicted better)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEV_CSV, help="reference table with `arch` and the true accuracy")
    parser.add_argument("--column", default="cifar10_test_acc_200ep", help="true accuracy column of --csv")
    parser.add_argument("--held-out", type=int, default=200,
                        help="judge on these many seeded held-out cells (0: every cell of --csv)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split")
    parser.add_argument("--proxy", type=Path, action="append", default=[], help="folder with a proxy.parquet")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[], help="BN-only nb201 supernet")
    parser.add_argument("--calibrated", type=Path, action="append", default=[], help="fully trained nb201 supernet")
    parser.add_argument("--calibrated-cells", type=int, default=100, help="cells calibrated per --calibrated")
    parser.add_argument("--data", default=None, help="DATA of the calibration (default: the checkpoint's)")
    parser.add_argument("--scores", type=Path, action="append", default=[],
                        help="CSV with `arch` and one column of scores per ranker (higher = better), e.g. "
                             "benchmarks/out/nb201_supernet_scores.csv of benchmarks.nb201_supernet")
    parser.add_argument("--score-file", type=Path, action="append", default=[], help="Parquet of `raynas score`")
    parser.add_argument("--fuse", action="append", default=[], help="a fuse:/vote: expression over --score-file columns")
    parser.add_argument("--select-fusion", default=None,
                        help="members whose fusions are judged on the search cells; the best is reported apart")
    parser.add_argument("--ranker-features", action="append", default=[],
                        help="estimator columns of a learned ranker (repeatable: one ranker each)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--train-cells", type=int, default=100)
    parser.add_argument("--k", type=int, default=10, help="top-k whose mean true accuracy is reported")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    return parser.parse_args()


def cost_rankers(space: SearchSpace, keys: list[str]) -> dict[str, Scores]:
    costs = CostModel(space).costs([space.arch(k) for k in keys])
    return {"#params": dict(zip(keys, map(float, costs["params"]))),
            "FLOPs": dict(zip(keys, map(float, costs["flops"])))}


def bn_rankers(space: SearchSpace, keys: list[str], checkpoints: list[Path]) -> dict[str, Scores]:
    archs = [space.arch(k) for k in keys]
    found = {"bn_score @ step 0": BNIndicator(depth_rule="sum").fit(build_supernet(space, 10, 3)).score(archs)}
    for path in checkpoints:
        supernet = load_checkpoint(path).supernet
        for rule in ("sum", "mean"):
            found[f"bn_score ({rule}) @ {path.parent.name}"] = BNIndicator(depth_rule=rule).fit(supernet).score(archs)
    return {name: dict(zip(keys, map(float, scores))) for name, scores in found.items()}


def calibrated_rankers(keys: list[str], checkpoints: list[Path], cells: int, data: str | None) -> dict[str, Scores]:
    found = {}
    for path in checkpoints:
        loaded = load_checkpoint(path)
        splits = load_data(data or loaded.data.name, seed=loaded.config.seed)
        picked = random.Random(0).sample(keys, min(cells, len(keys)))
        found[f"calibrated accuracy @ {path.parent.name}"] = {
            key: calibrate_and_evaluate(loaded.supernet, loaded.space.arch(key), splits.calib, splits.val,
                                        splits.mean, splits.std, CalibrationConfig())["accuracy"]
            for key in picked}
    return found


def proxy_rankers(folders: list[Path]) -> dict[str, Scores]:
    """One ranker per distinct proxy setting in each folder's proxy.parquet."""
    found = {}
    for folder in folders:
        rows = read_proxy_rows(folder)
        for identity, group in rows.groupby(list(IDENTITY), dropna=False):
            setting = dict(zip(IDENTITY, identity))
            name = "proxy " + " ".join(f"{k}={setting[k]}" for k in KEYS if k != "seed")
            seconds = group["cpu_seconds"].mean()
            found[f"{name} ({seconds:.1f} CPU-s/cell)"] = dict(zip(group["arch"], group["proxy_accuracy"]))
    return found


def score_file_rankers(files: list[Path]) -> dict[str, Scores]:
    """One ranker per score column of each file (rows without a score are left out)."""
    found = {}
    for file in files:
        frame = pd.read_csv(file)
        for column in frame.columns.drop("arch"):
            scored = frame[frame[column].notna()]
            found[column] = dict(zip(scored["arch"], scored[column].astype(float)))
    return found


def judge(name: str, scores: Scores, truth: dict[str, float], population: list[float], k: int,
          resamples: int) -> dict[str, Any]:
    keys = [key for key in scores if key in truth]
    quality = ranking_quality([scores[key] for key in keys], [truth[key] for key in keys], k=k,
                              population=population, resamples=resamples)
    return {"ranker": name, **quality}


def estimator_rankers(args: argparse.Namespace, space: SearchSpace, truth: dict[str, float],
                      search_keys: set[str]) -> tuple[list[er.Ranker], dict[str, Any]]:
    """Rankers of the score files, the fusions asked for, the fusion chosen on the search cells, and the
    learned ranker; with what the choice saw."""
    rankers: list[er.Ranker] = []
    chosen: dict[str, Any] = {}
    if not args.score_file:
        return rankers, chosen
    frame = er.read_score_files(args.score_file)
    rankers += er.base_rankers(frame) + [er.fused(frame, e) for e in args.fuse]
    if args.select_fusion:
        candidates = [er.fused(frame, e) for e in er.fusion_candidates(args.select_fusion.split(","))]
        search_truth = {k: v for k, v in truth.items() if k in search_keys}
        judged = [(er.judge(c, search_truth, 0)["spearman_rho"], c) for c in candidates]
        best_rho, best = max(judged, key=lambda pair: pair[0])
        chosen = {"expression": best.name, "search_cells": len(search_truth), "search_rho": best_rho,
                  "candidates": {c.name: rho for rho, c in judged}}
        held = [i for i, k in enumerate(best.keys) if k not in search_keys]
        label = f"{best.name} (chosen on {len(search_truth)} search cells)"
        rankers.append(er.Ranker(f"{label} on the held-out cells", [best.keys[i] for i in held], best.scores[held],
                                 best.cpu_seconds))
        rankers.append(er.Ranker(f"{label} on every cell", best.keys, best.scores, best.cpu_seconds))
    for features in args.ranker_features:
        rankers += er.learned(space, frame, truth, features.split(","), args.folds, args.train_cells)
    return rankers, chosen


def main() -> None:
    args = parse_args()
    space = load_space("nb201")
    reference = load_reference_column(args.csv, space, args.column)
    search_part, held_part = holdout_split(reference, args.held_out or 200, args.split_seed)
    if args.held_out:
        reference = held_part
    truth = dict(zip(reference.keys, reference.accuracy))
    keys = list(reference.keys)
    rankers = {**cost_rankers(space, keys), **bn_rankers(space, keys, args.checkpoint),
               **calibrated_rankers(keys, args.calibrated, args.calibrated_cells, args.data),
               **proxy_rankers(args.proxy), **score_file_rankers(args.scores)}
    population = list(reference.accuracy)
    rows = [judge(name, scores, truth, population, args.k, args.resamples) for name, scores in rankers.items()
            if sum(key in truth for key in scores) >= 2]
    k = args.k
    estimated, chosen = estimator_rankers(args, space, dict(zip(reference.keys, reference.accuracy)),
                                          set(search_part.keys))
    judged = [er.judge(r, truth, args.resamples, k) for r in estimated]
    print_estimators(judged, k)
    shown = [{**r, "tau [95% CI]": f"{r['kendall_tau']:.3f} [{r['kendall_tau_low']:.2f}, {r['kendall_tau_high']:.2f}]",
              "rho [95% CI]": f"{r['spearman_rho']:.3f} [{r['spearman_rho_low']:.2f}, {r['spearman_rho_high']:.2f}]",
              "top-1 (pct)": f"{r['top1_accuracy']:.2f} ({r['top1_percentile']:.0f})",
              f"top-{k} mean (pct)": f"{r[f'top{k}_mean_accuracy']:.2f} ({r[f'top{k}_percentile']:.0f})"}
             for r in rows]
    print(f"{len(keys)} reference cells ({'held out' if args.held_out else 'all'}) of {args.csv.name}; "
          f"best true accuracy {max(population):.2f}, mean {np.mean(population):.2f}")
    print(table(shown, ["ranker", "archs", "tau [95% CI]", "rho [95% CI]", "top-1 (pct)", f"top-{k} mean (pct)"]))
    path = write_json("reference_ranking", {
        "csv": str(args.csv), "column": args.column, "held_out": args.held_out, "split_seed": args.split_seed,
        "cells": len(keys), "k": k, "resamples": args.resamples, "rows": rows, "estimators": judged,
        "chosen_fusion": chosen,
        "truth_summary": pd.Series(population).describe().to_dict(),
    })
    print(f"wrote {path}")


def print_estimators(judged: list[dict[str, Any]], k: int) -> None:
    def cell(r: dict[str, Any], name: str, digits: int = 3) -> str:
        return f"{r[name]:.{digits}f} [{r[name + '_low']:.{digits}f}, {r[name + '_high']:.{digits}f}]"

    shown = [{"ranker": r["ranker"], "cells": r["cells"], "rho [95% CI]": cell(r, "spearman_rho"),
              "tau [95% CI]": cell(r, "kendall_tau"), "top-5% precision": cell(r, "top5pct_precision", 2),
              f"top-{k} mean": cell(r, f"top{k}_mean_accuracy", 2), "CPU-s/cell": f"{r['cpu_seconds_per_cell']:.3f}"}
             for r in sorted(judged, key=lambda r: -r["spearman_rho"])]
    if shown:
        print(table(shown, list(shown[0])))


if __name__ == "__main__":
    main()
