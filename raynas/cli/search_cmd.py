"""Multi-objective search over a trained checkpoint with an Optuna sampler on Ray actors."""

from __future__ import annotations

import argparse
from pathlib import Path

from raynas.cli.calibrate_cmd import add_pool_options, pool_config
from raynas.cli.common import add_address
from raynas.cli.estimate_common import add_depth_rule, checkpoint_data
from raynas.ray_env import ensure_ray
from raynas.search import EvaluatorPool
from raynas.search.samplers import SAMPLERS
from raynas.search.study import SearchConfig, search
from raynas.train import load_checkpoint


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path)
    add_search_options(parser)
    parser.add_argument("--data", default=None, help="DATA for calibration; default: the checkpoint's dataset")
    add_pool_options(parser)
    parser.add_argument("--out", type=Path, required=True, help="run directory (results/, run.json, study.journal)")
    add_address(parser)


def add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objectives", default="bn_score,flops",
                        help="comma-separated: bn_score|accuracy, flops, params, latency_ms")
    parser.add_argument("--constraint", action="append", default=[], help="e.g. 'flops<=2e8' (repeatable)")
    parser.add_argument("--sampler", default="nsga2", help=f"one of {sorted(SAMPLERS)}")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100, help="trials asked and evaluated together")
    parser.add_argument("--population", type=int, default=50, help="population of NSGA-II/III")
    parser.add_argument("--top-k", type=int, default=10, help="calibrate the best K of the BN-score stage")
    parser.add_argument("--latency-table", type=Path, default=None, help="table from `raynas latency` for latency_ms")
    parser.add_argument("--run-id", default="search", help="study name; re-using it resumes the search")
    parser.add_argument("--search-seed", type=int, default=0)
    add_depth_rule(parser)


def search_config(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(objectives=tuple(args.objectives.split(",")), constraints=tuple(args.constraint),
                        sampler=args.sampler, trials=args.trials, batch_size=args.batch_size,
                        population=args.population, seed=args.search_seed, top_k=args.top_k, run_id=args.run_id)


def latency_table(args: argparse.Namespace):
    if args.latency_table is None:
        return None
    from raynas.estimate.latency import LatencyTable

    return LatencyTable.load(args.latency_table)


def run(args: argparse.Namespace) -> int:
    config = search_config(args)
    ensure_ray(args.address)
    checkpoint = load_checkpoint(args.checkpoint)
    data = checkpoint_data(checkpoint, args.data)
    with EvaluatorPool(checkpoint, data, pool_config(args, checkpoint.config.seed, checkpoint.space)) as pool:
        result = search(checkpoint, pool, args.out, config, latency_table(args))
    print(f"{len(result.study.trials)} trials in {args.out}; report with: raynas report {args.out}")
    for row in result.calibrated[:5]:
        print(f"  top-1 {row['accuracy']:.4f}  flops {row['flops'] / 1e6:.2f}M  {row['arch']}")
    return 0
