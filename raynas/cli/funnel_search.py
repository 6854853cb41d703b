"""`raynas search SPACE --budget-cpu-s N`: the multi-fidelity funnel (``raynas.bpe.funnel``) as a command.

    raynas search nb201 --budget-cpu-s 1800 --data imagefolder:ROOT --out runs/nb201-search
    raynas search nb201 --config search_spaces/configs/nb201_search.yaml --pool cells.csv --out DIR

It prints the chosen cell and what it cost, and writes ``OUT/chosen.json`` and ``OUT/funnel.parquet``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from raynas.cli.common import at_least, positive_float, positive_int
from raynas.cli.estimate_common import read_arch_file
from raynas.cli.proxy_cmd import add_setting_overrides, setting_from_args
from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.ray_env import ensure_ray
from raynas.results.folder_lock import FolderLock
from raynas.search.recipes import default_estimator
from raynas.space import SearchSpace, load_space
from raynas.train.speed import RANK_BY

if TYPE_CHECKING:  # the bpe package pulls in Ray Tune and scipy: load it only when the command runs
    from raynas.bpe.funnel import FunnelConfig


def add_funnel_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("multi-fidelity search (with --budget-cpu-s, on a space)")
    group.add_argument("--budget-cpu-s", type=positive_float, default=None, metavar="SECONDS",
                       help="search a space under this many CPU-seconds: a label-free prescreen (--evaluator, or "
                            "'random'), then successive halving by proxy training; writes OUT/chosen.json")
    group.add_argument("--prescreen-share", type=float, default=0.4,
                       help="most of the budget the prescreen may spend (default 0.4)")
    group.add_argument("--candidates", type=positive_int, default=81, help="most cells entering the first rung (default 81); each rung also stops at its share of the budget")
    group.add_argument("--eta", type=at_least(2), default=3, help="each rung keeps the best 1/eta (default 3)")
    group.add_argument("--rung-epochs", default="1,3,9",
                       help="proxy epochs of each rung, comma-separated, lowest first (default 1,3,9); the rest of the "
                            "proxy setting is --setting")
    group.add_argument("--rank-by", choices=RANK_BY, default="accuracy",
                       help="what ranks a rung: val top-1, or a training-speed sum (default accuracy)")
    add_setting_overrides(parser, exclude=("epochs", "seed"))


def add_pool_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", type=Path, default=None,
                        help="CSV or Parquet file with an `arch` column: search only among these architectures")


def read_pool(path: Path, space: SearchSpace) -> list[str]:
    """The distinct keys of a pool file; an empty file, a missing `arch` column or another space's
    architectures are refused, naming the file."""
    if path.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--pool {path}: expected a .csv or .parquet file with an `arch` column")
    return list(dict.fromkeys(space.key(a) for a in read_arch_file(path, space)))


def funnel_config(args: argparse.Namespace, space: SearchSpace) -> FunnelConfig:
    from raynas.bpe.funnel import RANDOM, FunnelConfig

    try:
        epochs = tuple(int(e) for e in str(args.rung_epochs).split(","))
    except ValueError as err:
        raise ConfigError(f"--rung-epochs {args.rung_epochs!r}: expected comma-separated integers, e.g. 1,3,9") from err
    setting = setting_from_args(args, space)
    evaluator = args.evaluator or default_estimator(space)
    if evaluator in ("calibrate", "proxy"):
        raise ConfigError(f"--budget-cpu-s prescreens with a label-free estimator or 'random', not {evaluator!r}")
    config = FunnelConfig(budget_cpu_s=args.budget_cpu_s, estimator=evaluator, prescreen=args.prescreen or 1000,
                          prescreen_share=args.prescreen_share, candidates=args.candidates, eta=args.eta,
                          rung_epochs=epochs, setting=setting, rank_by=args.rank_by, seed=args.search_seed,
                          probe_images=args.probe_images, cpus_per_arch=args.actor_cpus, use_gpu=args.gpu)
    return replace(config, prescreen_share=0.0) if evaluator == RANDOM else config


def run(args: argparse.Namespace) -> int:
    from raynas.bpe.funnel import run_funnel

    if args.source.is_dir():
        raise ConfigError("--budget-cpu-s searches a space (name or .yaml), not a checkpoint folder")
    space = load_space(str(args.source))
    pool = read_pool(args.pool, space) if args.pool is not None else None
    config = funnel_config(args, space)
    data = load_data(args.data or "digits", seed=config.seed)
    with FolderLock(args.out):
        ensure_ray(args.address)
        result = run_funnel(space, data, args.out, config, pool)
    chosen = result.chosen
    rungs = ", ".join(f"{r['trained']} at {r['epochs']} ep" for r in chosen["rungs"])
    print(f"chose {chosen['arch']}")
    print(f"  {config.rank_by} {chosen[config.rank_by]:.4f} at rung {chosen['rung']} ({chosen['epochs']} epochs); "
          f"flops {chosen['flops'] / 1e6:.1f}M, params {chosen['params'] / 1e6:.3f}M")
    print(f"  spent {chosen['cpu_seconds']:.0f} of {config.budget_cpu_s:.0f} CPU-s: prescreen "
          f"{chosen['prescreen']['cells']} cells ({chosen['prescreen']['cpu_seconds']:.0f} CPU-s), rungs {rungs}")
    print(f"wrote {args.out / 'chosen.json'}")
    return 0
