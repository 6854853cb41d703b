"""Multi-objective search over a trained checkpoint with an Optuna sampler on Ray actors."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from raynas.cli.calibrate_cmd import add_pool_options, pool_config
from raynas.cli.common import add_address, at_least, non_negative_int, positive_int
from raynas.cli.estimate_common import add_depth_rule, checkpoint_data
from raynas.ray_env import ensure_ray
from raynas.results.folder_lock import FolderLock
from raynas.search import EvaluatorPool
from raynas.search.costs import CheapObjectives
from raynas.search.samplers import SAMPLERS
from raynas.search.study import SearchConfig, check_folder, check_satisfiable, search
from raynas.train import load_checkpoint


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path)
    add_search_options(parser)
    add_prescreen_options(parser)
    parser.add_argument("--data", default=None, help="DATA for calibration; default: the checkpoint's dataset")
    add_pool_options(parser)
    parser.add_argument("--wait-timeout", type=float, default=600.0,
                        help="seconds a joined cluster may take to make room for the actors (default 600)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run directory (results/, run.json, study.journal); re-using it resumes its search, "
                             "which must have the same checkpoint and settings (--trials may grow)")
    parser.add_argument("--new-run", action="store_true",
                        help="start a new search in the first free sub-folder OUT/run-N instead of resuming OUT")
    add_address(parser)


def add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objectives", default="bn_score,flops",
                        help="comma-separated: bn_score|accuracy, flops, params, latency_ms")
    parser.add_argument("--constraint", action="append", default=[], help="e.g. 'flops<=2e8' (repeatable)")
    parser.add_argument("--sampler", default="nsga2", help=f"one of {sorted(SAMPLERS)}")
    parser.add_argument("--trials", type=positive_int, default=1000)
    parser.add_argument("--batch-size", type=positive_int, default=100, help="trials asked and evaluated together")
    parser.add_argument("--population", type=at_least(2), default=50, help="population of NSGA-II/III")
    parser.add_argument("--top-k", type=non_negative_int, default=10, help="calibrate the best K of the BN-score stage")
    parser.add_argument("--latency-table", type=Path, default=None, help="table from `raynas latency` for latency_ms")
    parser.add_argument("--run-id", default="search", help="study name; re-using it resumes the search")
    parser.add_argument("--search-seed", type=int, default=0)
    add_depth_rule(parser)


def add_prescreen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prescreen", type=positive_int, default=None, metavar="N",
                        help="before the trials, sample N children, score their table-lookup objectives in bulk "
                             "and enqueue the Pareto front of the feasible ones as the first trials")
    parser.add_argument("--prescreen-keep", type=non_negative_int, default=0, metavar="K",
                        help="with --prescreen: keep the next fronts too, until K children (default 0: the front)")


def search_config(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(objectives=tuple(args.objectives.split(",")), constraints=tuple(args.constraint),
                        sampler=args.sampler, trials=args.trials, batch_size=args.batch_size,
                        population=args.population, seed=args.search_seed, top_k=args.top_k, run_id=args.run_id)


def latency_table(args: argparse.Namespace):
    if args.latency_table is None:
        return None
    from raynas.estimate.latency import LatencyTable

    return LatencyTable.load(args.latency_table)


def new_run_dir(out: Path) -> Path:
    """The first ``OUT/run-N`` (N = 1, 2, ...) not there yet, created: two ``--new-run`` never share one."""
    n = 1
    while True:
        try:
            (out / f"run-{n}").mkdir(parents=True)
            return out / f"run-{n}"
        except FileExistsError:
            n += 1


def run(args: argparse.Namespace) -> int:
    config = replace(search_config(args), prescreen=args.prescreen or 0, prescreen_keep=args.prescreen_keep)
    checkpoint = load_checkpoint(args.checkpoint)  # every input is read and checked before Ray starts
    latency = latency_table(args)
    info = checkpoint.data
    check_satisfiable(CheapObjectives(checkpoint.space, info.num_classes, info.in_channels, latency),
                      config.parsed_constraints)
    data = checkpoint_data(checkpoint, args.data)
    ensure_ray(args.address)
    pool_settings = replace(pool_config(args, checkpoint.config.seed, checkpoint.space), wait_timeout=args.wait_timeout)
    if args.new_run:
        out = new_run_dir(args.out)
        print(f"[raynas] new search in {out}")
    else:
        out = args.out
        with FolderLock(out):  # refuse a busy folder or another search's before any actor starts
            check_folder(out, checkpoint, config, pool_settings)
    with EvaluatorPool(checkpoint, data, pool_settings) as pool:
        result = search(checkpoint, pool, out, config, latency)
    print(f"{len(result.study.trials)} trials in {out}; report with: raynas report {out}")
    for row in result.calibrated[:5]:
        print(f"  top-1 {row['accuracy']:.4f}  flops {row['flops'] / 1e6:.2f}M  {row['arch']}")
    return 0
