"""What one proxy option changes: each setting of a proxy folder against a base setting, on shared cells.

    raynas proxy nb201 --setting search_spaces/bpe/proxy/nb201_cifar10_cpu.yaml --cutout 4 \\
        --archs benchmarks/out/bpe_nb201/held_out.csv ... --out benchmarks/out/bpe_nb201/judged
    raynas proxy nb201 --setting search_spaces/bpe/proxy/nb201_cifar10_cpu.yaml --amp bf16 \\
        --archs benchmarks/out/bpe_nb201/held_out_40.csv ... --out benchmarks/out/bpe_nb201/judged
    python -m benchmarks.proxy_options --proxy benchmarks/out/bpe_nb201/judged \\
        --base search_spaces/bpe/proxy/nb201_cifar10_cpu.yaml

Every setting found in ``proxy.parquet`` is compared with the base on the cells both trained, in
one table: Spearman of each against the reference's accuracy (so a setting run on fewer cells is
judged against the base on those same cells, not against its figure on all of them), Spearman
between the two settings' accuracies (does the option reorder cells at all?), and the ratio of
their CPU seconds per cell. Writes ``benchmarks/out/proxy_options.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import spearmanr

from benchmarks.common import table, write_json
from benchmarks.reference_ranking import DEV_CSV
from raynas.bpe import load_proxy_setting, load_reference_column, read_proxy_rows
from raynas.bpe.proxy import IDENTITY
from raynas.bpe.proxy_setting import KEYS
from raynas.space import load_space


COLUMNS = ("setting", "cells", "Spearman vs truth", "base vs truth", "Spearman vs base", "CPU-s/cell", "CPU-s ratio")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxy", type=Path, required=True, help="folder of a raynas proxy run (proxy.parquet)")
    parser.add_argument("--base", type=Path, required=True, help="the setting every other is compared with")
    parser.add_argument("--space", default="nb201")
    parser.add_argument("--csv", type=Path, default=DEV_CSV, help="reference table with `arch` and accuracies")
    parser.add_argument("--column", default="cifar10_test_acc_200ep")
    return parser.parse_args()


def changed_keys(setting: dict[str, Any], base: dict[str, Any]) -> str:
    """``cutout=4 amp=bf16``: what a setting changes from the base ("base" for the base itself)."""
    return " ".join(f"{k}={setting[k]}" for k in KEYS if setting[k] != base[k]) or "base"


def compare(group: pd.DataFrame, base_rows: pd.DataFrame, truth: dict[str, float], name: str) -> dict[str, Any]:
    both = group.merge(base_rows, on="arch", suffixes=("", "_base"))
    true = [truth[key] for key in both["arch"]]
    return {
        "setting": name, "cells": len(both),
        "Spearman vs truth": float(spearmanr(both["proxy_accuracy"], true)[0]),
        "base vs truth": float(spearmanr(both["proxy_accuracy_base"], true)[0]),
        "Spearman vs base": float(spearmanr(both["proxy_accuracy"], both["proxy_accuracy_base"])[0]),
        "CPU-s/cell": float(both["cpu_seconds"].mean()),
        "CPU-s ratio": float(both["cpu_seconds"].mean() / both["cpu_seconds_base"].mean()),
    }


def main() -> None:
    args = parse_args()
    space = load_space(args.space)
    base = load_proxy_setting(args.base, space).to_dict()
    reference = load_reference_column(args.csv, space, args.column)
    truth = dict(zip(reference.keys, reference.accuracy))
    rows = read_proxy_rows(args.proxy)
    rows = rows[(rows["status"] == "ok") & (rows["space"] == space.name)]
    settings = {identity: group for identity, group in rows.groupby(list(IDENTITY), dropna=False)}
    base_rows = next((g for i, g in settings.items() if all(dict(zip(IDENTITY, i))[k] == base[k] for k in KEYS)), None)
    if base_rows is None:
        raise SystemExit(f"{args.proxy}: no rows of the base setting {args.base}")
    base_rows = base_rows[["arch", "proxy_accuracy", "cpu_seconds"]]
    results = [compare(group[["arch", "proxy_accuracy", "cpu_seconds"]], base_rows, truth,
                       changed_keys(dict(zip(IDENTITY, identity)), base))
               for identity, group in settings.items()]
    results = [r for r in results if r["setting"] != "base" and r["cells"] >= 3]
    print(table(results, list(COLUMNS)))
    write_json("proxy_options", {"proxy": str(args.proxy), "base": str(args.base), "results": results})


if __name__ == "__main__":
    main()
