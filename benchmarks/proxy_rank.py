"""Does a standalone proxy rank NAS-Bench-201 cells like their 200-epoch CIFAR-10 accuracy?

    python -m benchmarks.proxy_rank                                  # 50 dev cells, the shipped BPE1 setting
    python -m benchmarks.proxy_rank --cells 40 --epochs 2 --data-fraction 0.2 --cpus 2

1. Samples ``--cells`` architectures (seeded) of the dev table (``arch`` and the true accuracy
   ``--column``, by default NAS-Bench-201's 200-epoch CIFAR-10 test accuracy).
2. Trains each one standalone under the proxy setting on CIFAR-10 (``proxy_evaluate``: one Ray
   task per cell, ``--cpus`` at a time) and records its val top-1 on the seeded held-out split of
   the training pool. Rows go to ``benchmarks/out/proxy_rank/proxy.parquet``; a re-run with the
   same setting trains only the cells it lacks.
3. Reports Kendall tau and Spearman rho against the true accuracy for the proxy and, on the
   same cells, for #params (``raynas.cost``, no training), and the seconds per cell.

Prints a table and writes ``benchmarks/out/proxy_rank.json``.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from benchmarks.common import OUT, ROOT, cifar_spec, table, write_json
from raynas.bpe import (
    load_proxy_setting,
    load_reference_column,
    proxy_evaluate,
    rank_against,
)
from raynas.bpe.evaluate import rank_correlation
from raynas.cost import CostModel
from raynas.ray_env import ensure_ray
from raynas.space import load_space

DEV_CSV = ROOT.parent / "shared" / "data" / "nb201_cifar10_dev.csv"
SETTING = ROOT / "search_spaces" / "bpe" / "proxy" / "nb201_cifar10_proxy.yaml"
OVERRIDES = {"epochs": int, "data_fraction": float, "channels": int, "cells_per_stage": int, "resolution": int,
             "batch_size": int, "lr": float}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEV_CSV, help="dev table with `arch` and the true accuracy")
    parser.add_argument("--column", default="cifar10_test_acc_200ep", help="true accuracy column of --csv")
    parser.add_argument("--cells", type=int, default=50, help="cells sampled from --csv (seeded by --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cell sample")
    parser.add_argument("--setting", type=Path, default=SETTING, help="proxy setting file")
    for key, kind in OVERRIDES.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, help=f"override the setting's {key}")
    parser.add_argument("--data", default=None, help="default: CIFAR-10 JPEGs from ../shared/data")
    parser.add_argument("--cpus", type=int, default=2, help="cells trained in parallel (1 CPU each)")
    parser.add_argument("--out", type=Path, default=OUT / "proxy_rank", help="folder of proxy.parquet (resumed)")
    parser.add_argument("--address", default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    space = load_space("nb201")
    setting = load_proxy_setting(args.setting, space).replace(
        "command line", **{key: getattr(args, key) for key in OVERRIDES})
    reference = load_reference_column(args.csv, space, args.column)
    keys = random.Random(args.seed).sample(list(reference.keys), args.cells)
    ensure_ray(args.address, num_cpus=args.cpus)
    print(f"proxy {setting.describe()}: {len(keys)} cells, {args.cpus} in parallel", flush=True)
    rows = proxy_evaluate(space, keys, setting, args.data or cifar_spec(), args.out,
                          on_row=lambda r: print(f"  {r['proxy_accuracy']:.4f}  {r['seconds']:6.1f}s  {r['arch']}",
                                                 flush=True))
    truth = dict(zip(reference.keys, reference.accuracy))
    params = CostModel(space).params([space.arch(k) for k in rows["arch"]])
    proxy_ranks = rank_against(rows, reference)
    params_tau, params_rho = rank_correlation(params, rows["arch"].map(truth).to_numpy(float))
    both_tau, both_rho = rank_correlation(rows["proxy_accuracy"].to_numpy(float), params)
    results = [
        {"ranker": "proxy (standalone)", "cells": int(proxy_ranks["archs"]), "kendall_tau": proxy_ranks["kendall_tau"],
         "spearman_rho": proxy_ranks["spearman_rho"], "seconds_per_cell": float(rows["seconds"].mean())},
        {"ranker": "#params", "cells": len(rows), "kendall_tau": params_tau, "spearman_rho": params_rho,
         "seconds_per_cell": 0.0},
    ]
    print(table(results, ["ranker", "cells", "kendall_tau", "spearman_rho", "seconds_per_cell"]))
    print(f"proxy vs #params: kendall tau {both_tau:.3f}, spearman rho {both_rho:.3f}; "
          f"mean proxy accuracy {rows['proxy_accuracy'].mean():.4f}; wall {time.perf_counter() - started:.0f}s")
    path = write_json("proxy_rank", {
        "setting": setting.to_dict(), "cells": keys, "csv": str(args.csv), "column": args.column, "seed": args.seed,
        "cpus": args.cpus, "data": rows["data"].iloc[0], "train_images": int(rows["train_images"].iloc[0]),
        "val_images": int(rows["val_images"].iloc[0]), "results": results,
        "proxy_vs_params": {"kendall_tau": both_tau, "spearman_rho": both_rho},
        "wall_seconds": time.perf_counter() - started, "rows": str(args.out / "proxy.parquet"),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
