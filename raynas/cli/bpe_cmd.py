"""Budgeted performance estimation: search the cheap proxy that ranks a reference set best (MIP).

    raynas bpe BPE.yaml --reference FILE --out DIR [--rounds R --trials-per-round K ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from raynas.cli.common import add_address, non_negative_float, non_negative_int, positive_float, positive_int
from raynas.cli.estimate_common import add_depth_rule
from raynas.sampling import SAMPLINGS
from raynas.search.samplers import SAMPLERS


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bpe", type=Path, help="BPE space file (see search_spaces/bpe/)")
    parser.add_argument("--reference", type=Path, required=True,
                        help="reference table (.csv or .parquet) with columns arch, accuracy")
    parser.add_argument("--accuracy-column", default="accuracy",
                        help="true accuracy column of --reference (NAS-Bench-201's dev table: cifar10_test_acc_200ep)")
    parser.add_argument("--held-out", type=non_negative_int, default=0,
                        help="set aside this many seeded reference rows that no trial sees (written to "
                             "OUT/held_out.csv, to judge the chosen setting on afterwards)")
    parser.add_argument("--out", type=Path, required=True, help="new folder for trials/, bpe_result.json and tune/")
    parser.add_argument("--data", default=None, help="DATA override: digits | cifar10:ROOT | imagefolder:ROOT | synthetic")
    parser.add_argument("--rounds", type=positive_int, default=None,
                        help="max MIP rounds (default: the file's mip.rounds)")
    parser.add_argument("--trials-per-round", type=positive_int, default=None,
                        help="BPE trials per round, run in parallel")
    parser.add_argument("--max-trials", type=positive_int, default=None,
                        help="stop once this many trials ran")
    parser.add_argument("--max-seconds", type=positive_float, default=None,
                        help="stop before a round after this wall time")
    parser.add_argument("--cost-weight", type=non_negative_float, default=None,
                        help="lambda of the objective tau - lambda * cost / max cost (default 0: tau alone)")
    parser.add_argument("--sampler", default=None, choices=sorted(SAMPLERS), help="Optuna sampler of the trials")
    parser.add_argument("--sampling", choices=SAMPLINGS, default=None,
                        help="how proxy supernets sample children per step; default: the file's train.sampling, "
                             "else sandwich for mobilenet spaces and uniform for nb201")
    add_depth_rule(parser)
    parser.add_argument("--cpus-per-trial", type=positive_float, default=1.0)
    parser.add_argument("--gpu", action="store_true", help="one GPU per trial")
    parser.add_argument("--keep-runs", action="store_true", help="keep every trial's supernet checkpoints under OUT/runs")
    add_address(parser)


def run(args: argparse.Namespace) -> int:
    from raynas.bpe import load_bpe_space, load_reference_column, run_bpe  # Ray Tune and scipy load only here
    from raynas.bpe.ranking import holdout_split
    from raynas.bpe.space import setting_key

    bpe = load_bpe_space(args.bpe)
    reference = load_reference_column(args.reference, bpe.target_space, args.accuracy_column)
    if args.held_out:
        reference, held_out = holdout_split(reference, args.held_out, bpe.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        held_out.write(args.out / "held_out.csv")
    result = run_bpe(
        bpe, reference, args.out, data=args.data, rounds=args.rounds, trials_per_round=args.trials_per_round,
        max_trials=args.max_trials, max_seconds=args.max_seconds, cost_weight=args.cost_weight, sampler=args.sampler,
        address=args.address, cpus_per_trial=args.cpus_per_trial, use_gpu=args.gpu, keep_runs=args.keep_runs,
        sampling=args.sampling, depth_rule=args.depth_rule,
    )
    how = (f"{result.sampling} sampling, {result.depth_rule} depth rule" if bpe.proxy == "supernet"
           else "standalone proxies")
    print(f"{bpe.name}: {len(result.records)} trials in {len(result.rounds)} rounds, {result.seconds:.0f}s "
          f"({result.stop_reason}); {how}")
    for summary in result.rounds:
        if summary.decision is not None:
            importances = ", ".join(f"{k} {v:.2f}" for k, v in summary.decision.importances.items())
            print(f"  round {summary.round}: fixed {summary.decision.param}={summary.decision.value} "
                  f"(importances: {importances})")
    print(f"chosen: {setting_key(result.setting, bpe.names)}")
    print(f"  kendall tau {result.tau:.4f}  spearman rho {result.rho:.4f}  cost {result.cost_seconds:.1f}s on {result.device}")
    print(f"trials: {result.trials_dir}  result: {result.result_path}")
    if args.held_out:
        print(f"held out: {args.out / 'held_out.csv'} ({args.held_out} rows no trial saw); judge the chosen setting "
              f"with: raynas proxy {bpe.target_space.name} --setting {result.result_path} "
              f"--archs {args.out / 'held_out.csv'} --reference {args.out / 'held_out.csv'} --rank-by {bpe.rank_by}")
    return 0
