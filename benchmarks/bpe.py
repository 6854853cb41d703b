"""BPE on CIFAR-10: does the proxy that MIP picks rank like the full budget, at a fraction of its cost?

    python -m benchmarks.bpe                                   # defaults: about 10-15 min on 2 cores
    python -m benchmarks.bpe --ref-archs 4 --train-images 300 --val-images 200 --rounds 2 \\
        --trials-per-round 2 --full-epochs 1                   # a smoke run of a few minutes

1. Reference: ``--ref-archs`` children of ``mbv3_cifar`` (min, max, seeded random), each trained
   from scratch (``make_reference``: ``retrain``, one Ray task per child) on the same subset.
2. BPE: ``run_bpe`` with ``search_spaces/bpe/mbv3_cifar_bpe.yaml``, MIP rounds of Tune trials.
3. Full budget: the setting you would run without BPE (full mode, native resolution, width 1,
   all the data, ``--full-epochs``, sandwich of 4, calibrated accuracy), evaluated by the same
   ``evaluate_setting`` in a 1-CPU Ray task, so its cost compares with a BPE trial's.
4. Zero-cost baselines: rank by #params and by FLOPs (no training at all).

Prints a table and writes ``benchmarks/out/bpe.json``. The reference is saved to
``benchmarks/out/bpe_reference.csv``; ``--reference`` reuses one and skips step 1.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

from benchmarks.common import OUT, cifar_spec, table, write_json
from raynas.bpe import ProxyTask, evaluate_setting, load_bpe_space, load_reference, make_reference, run_bpe
from raynas.bpe.evaluate import rank_correlation
from raynas.bpe.space import setting_key
from raynas.cost import CostModel
from raynas.data import load_data
from raynas.ray_env import ensure_ray
from raynas.train import TrainConfig

BPE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "bpe" / "mbv3_cifar_bpe.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bpe", type=Path, default=BPE_FILE)
    parser.add_argument("--data", default=None, help="default: CIFAR-10 JPEGs from ../shared/data")
    parser.add_argument("--train-images", type=int, default=1000, help="training subset for every run")
    parser.add_argument("--val-images", type=int, default=500)
    parser.add_argument("--ref-archs", type=int, default=8)
    parser.add_argument("--ref-epochs", type=int, default=3)
    parser.add_argument("--ref-lr", type=float, default=0.2)
    parser.add_argument("--reference", type=Path, default=None, help="reuse a reference table (skips training it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials-per-round", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--cost-weight", type=float, default=0.0)
    parser.add_argument("--full-epochs", type=int, default=2, help="epochs of the full-budget baseline")
    parser.add_argument("--full-lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address", default=None)
    return parser.parse_args()


def full_budget_setting(args: argparse.Namespace, calib_images: int) -> dict[str, Any]:
    return {"epochs": args.full_epochs, "batch_size": 64, "resolution": "native", "width_multiplier": 1.0,
            "data_fraction": 1.0, "mode": "full", "sandwich_size": 4, "calib_images": calib_images, "lr": args.full_lr}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    ensure_ray(args.address)
    bpe = load_bpe_space(args.bpe)
    space = bpe.target_space
    data = load_data(args.data or cifar_spec(), seed=args.seed, calib_images=max(bpe.choices["calib_images"]),
                     max_train_images=args.train_images, max_val_images=args.val_images)
    print(data.summary(), flush=True)

    ref_path = OUT / "bpe_reference.csv"
    if args.reference is not None:
        reference = load_reference(args.reference, space)
        ref_seconds = 0.0
    else:
        t = time.perf_counter()
        config = TrainConfig(mode="full", epochs=args.ref_epochs, batch_size=64, lr=args.ref_lr, seed=args.seed,
                             augment=False)
        reference = make_reference(space, bpe.reference_arch_list(args.ref_archs), data, config, path=ref_path)
        ref_seconds = time.perf_counter() - t
        print(f"reference: {len(reference)} children in {ref_seconds:.0f}s, accuracy "
              f"{min(reference.accuracy):.3f}..{max(reference.accuracy):.3f}", flush=True)

    run_dir = OUT / "bpe_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    result = run_bpe(bpe, reference, run_dir, data=data, rounds=args.rounds, trials_per_round=args.trials_per_round,
                     max_seconds=args.max_seconds, cost_weight=args.cost_weight)

    full = full_budget_setting(args, max(bpe.choices["calib_images"]))
    task = ProxyTask(bpe, reference, str((run_dir / "full_budget").resolve()))
    full_row = ray.get(ray.remote(num_cpus=1)(evaluate_setting).remote(task, full, data, "full-budget"))

    costs = CostModel(space, num_classes=data.num_classes).costs(list(reference.archs))
    accuracy = np.asarray(reference.accuracy)
    rows = [
        {"estimate": "chosen BPE (MIP)", "tau": result.tau, "rho": result.rho, "cost_s": result.cost_seconds,
         "setting": setting_key(result.setting)},
        {"estimate": "full budget", "tau": full_row["tau"], "rho": full_row["rho"], "cost_s": full_row["cost_seconds"],
         "setting": setting_key(full)},
    ]
    for name in ("params", "flops"):
        tau, rho = rank_correlation(costs[name].astype(float), accuracy)
        rows.append({"estimate": f"#{name} (no training)", "tau": tau, "rho": rho, "cost_s": 0.0, "setting": ""})
    search_cost = sum(r["cost_seconds"] for r in result.records)
    print()
    print(table(rows, ["estimate", "tau", "rho", "cost_s", "setting"]))
    print(f"\nMIP: {len(result.records)} trials in {len(result.rounds)} rounds ({result.stop_reason}), "
          f"{result.seconds:.0f}s wall, {search_cost:.0f}s of trial time; chosen BPE costs "
          f"{result.cost_seconds / max(full_row['cost_seconds'], 1e-9):.2f}x the full budget")
    for summary in result.rounds:
        if summary.decision is not None:
            print(f"  round {summary.round}: fixed {summary.decision.param}={summary.decision.value}")
    path = write_json("bpe", {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": data.summary(), "reference": {"archs": list(reference.keys), "accuracy": list(reference.accuracy),
                                              "train_seconds": ref_seconds},
        "rows": rows, "full_budget": full_row, "bpe": result.to_dict(), "trials": list(result.records),
        "search_trial_seconds": search_cost, "total_seconds": time.perf_counter() - started,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
