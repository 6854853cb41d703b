"""How well does the per-block latency table rank and predict real latency?

For each space: export children sampled one per FLOPs quantile, time each whole child end to
end, measure the table on this machine, time the children again, and compare. Prints one row
per space (``repeat_rho``: how well the two end-to-end runs agree, the ceiling for ``spearman``;
``meas/pred``: median ratio of measured to predicted latency) and writes
``benchmarks/out/latency_table.json`` (per-child numbers included).

    .venv/bin/python benchmarks/latency_table.py [--spaces tiny mbv3_cifar] [--children 40] [--threads 1] [--gpu]

Timing runs with one torch thread by default: on a small machine shared with other processes
that is the most stable setting (``--threads 0`` leaves torch's own setting). Children are timed
in interleaved passes, like the table's entries, so a slow phase of the machine does not fall on
the children of one FLOPs range.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

from raynas.cost import CostModel
from raynas.estimate.latency import (
    flops_stratified_sample,
    measure_children_ms,
    measure_latency_table,
    num_threads,
)
from raynas.space import SearchSpace, load_space
from raynas.supernet import build_supernet

OUT = Path(__file__).resolve().parent / "out" / "latency_table.json"
CHILD_TIMING = {"repeats": 64, "rounds": 16}
"""Twice the table's passes: a child is one long call, so a busy phase hits every call of a pass."""
COLUMNS = ("space", "device", "entries", "n", "spearman", "kendall", "mae_pct", "meas/pred", "repeat_rho", "build_s")


def evaluate(space: SearchSpace, n: int, device: str, seed: int,
             timing: dict[str, int] = CHILD_TIMING) -> dict[str, Any]:
    """Time ``n`` exported children end to end, build the table, time them again, and compare.

    The ground truth is the mean of the two end-to-end runs; how well the runs agree with each
    other (``repeat_rho``) is the best rank correlation this machine allows right now.
    """
    archs = flops_stratified_sample(space, n, seed=seed)
    net = build_supernet(space, num_classes=10).eval()
    children, resolutions = [net.export(arch) for arch in archs], [space.resolution(a) for a in archs]
    before = measure_children_ms(children, resolutions, device, **timing)
    start = time.perf_counter()
    table = measure_latency_table(space, device)
    build_s = time.perf_counter() - start
    after = measure_children_ms(children, resolutions, device, **timing)
    measured, predicted = (before + after) / 2, table.predict(space, archs)
    return {
        "space": space.name, "device": table.device_key, "entries": len(table.entries), "n": n,
        "spearman": float(spearmanr(predicted, measured).statistic),
        "kendall": float(kendalltau(predicted, measured).statistic),
        "mae_pct": float(np.mean(np.abs(predicted - measured) / measured) * 100),
        "meas/pred": float(np.median(measured / predicted)),
        "repeat_rho": float(spearmanr(before, after).statistic),
        "build_s": build_s,
        "table_meta": table.meta,
        "children": [
            {"arch": space.key(a), "flops": int(f), "predicted_ms": float(p), "measured_ms": [float(b), float(c)]}
            for a, f, p, b, c in zip(archs, CostModel(space).flops(archs), predicted, before, after)
        ],
    }


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("  ".join(f"{c:>10}" if c not in ("space", "device") else f"{c:<18}" for c in COLUMNS))
    for row in rows:
        cells = []
        for c in COLUMNS:
            value = row[c]
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            cells.append(f"{text:<18}" if c in ("space", "device") else f"{text:>10}")
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["tiny", "mbv3_cifar"])
    parser.add_argument("--children", type=int, default=40, help="children per space, one per FLOPs quantile")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing; 0: torch's setting")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    device = "cuda" if args.gpu else "cpu"
    with num_threads(args.threads or None):
        rows = [evaluate(load_space(name), args.children, device, args.seed) for name in args.spaces]
    print_rows(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "seed": args.seed, "results": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
