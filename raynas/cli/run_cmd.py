"""The main job: train a supernet, search it, retrain (or calibrate) the best per cost target, test, export.

On the embedded default (local Ray, digits, the tiny space) it runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

import pandas as pd

from raynas.cli.calibrate_cmd import pool_config
from raynas.cli.common import (
    DEFAULT_TRAINING,
    add_address,
    non_negative_int,
    positive_float,
    positive_int,
)
from raynas.cli.search_cmd import add_search_options, latency_table, search_config
from raynas.cli.train_cmd import (
    add_input,
    add_max_failures,
    add_speed_options,
    max_failures,
    speed_options,
)
from raynas.data import DataSplits, load_data
from raynas.data.streaming import resolve_input
from raynas.errors import ConfigError
from raynas.logs import get_logger
from raynas.protocol.delivery import SUMMARY_FILE, deliver, format_final_table
from raynas.protocol.main_job import (
    bignas_finals,
    bnnas_finals,
    cost_objective,
    default_recipe,
    parse_targets,
    quality_objective,
    resolve_targets,
)
from raynas.protocol.plot import plot_main_job
from raynas.protocol.retraining import RetrainRecipe
from raynas.protocol.targets import SHORTLIST_RULES
from raynas.ray_env import ensure_ray
from raynas.results import ResultStore
from raynas.results.report import RunDir, load_report, write_report
from raynas.search.costs import CheapObjectives
from raynas.search.recipes import default_sampling, main_job_estimator
from raynas.search.study import SearchConfig, record_stage
from raynas.space import SearchSpace, load_space
from raynas.space.families.mobilenet import MobileNetSpec
from raynas.supernet.mobilenet import with_stage_skip
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet
from raynas.train.config import bignas_recipe

# BN-only training needs a far higher learning rate than full training (BN-NAS used 0.25 at
# batch 512 for ~25k steps); on the short embedded budget a trainable classifier lets it learn.
FULL_MODE_EPOCHS = 40
FINETUNE_LR = 0.01  # a tenth of the from-scratch rate: the inherited weights are already good

logger = get_logger(__name__)


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="tiny", help="space name or .yaml path")
    parser.add_argument("--data", default="digits", help="digits | synthetic | cifar10:ROOT | imagefolder:ROOT")
    parser.add_argument("--out", type=Path, default=Path("runs/main"), help="run directory")
    parser.add_argument("--workers", type=non_negative_int, default=2, help="Ray Train workers for supernet training")
    parser.add_argument("--gpu", action="store_true", help="train and evaluate on GPUs")
    parser.add_argument("--mode", choices=["bn_only", "full"], default=DEFAULT_TRAINING["mode"],
                        help="bn_only: the BN-NAS protocol (retrain the found children); "
                             "full: the BigNAS protocol (deploy calibrated children of a fully trained supernet)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"supernet training epochs; default {DEFAULT_TRAINING['epochs']} (bn_only), "
                             f"{FULL_MODE_EPOCHS} (full: every weight has to learn)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help=f"supernet learning rate; default {DEFAULT_TRAINING['lr']} (bn_only), BigNAS's recipe (full)")
    parser.add_argument("--perturbations", type=int, default=20,
                        help="random perturbations around each target's best grid child (BigNAS path)")
    parser.add_argument("--sampling", choices=["sandwich", "uniform"], default=None,
                        help="children per supernet step; default: the space family's best-ranking rule")
    parser.add_argument("--train-images", type=positive_int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib-images", type=positive_int, default=500)
    parser.add_argument("--actors", type=positive_int, default=2, help="evaluator actors for the search")
    parser.add_argument("--actor-cpus", type=positive_float, default=1.0)
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="BigNAS path: fine-tune each deployed child this many epochs (default 0: none, "
                             "as BigNAS found it adds nothing)")
    parser.add_argument("--targets", default=None,
                        help="cost targets: a count (3 = budgets at cost quantiles) or budgets '2e4,5e4'; "
                             "default: the --constraint limit on the cost objective, else 3")
    parser.add_argument("--per-target", type=int, default=RetrainRecipe.per_target,
                        help="candidates per target, trained by successive halving (BN-NAS path)")
    parser.add_argument("--shortlist", choices=list(SHORTLIST_RULES), default=RetrainRecipe.shortlist,
                        help="budget: candidates anywhere under each target, ranked by score and cost fused; "
                             "band: the best-scored of each cost band, as BN-NAS (BN-NAS path)")
    parser.add_argument("--short-epochs", type=int, default=None, help="max epochs of the ASHA shortlist stage")
    parser.add_argument("--final-epochs", type=int, default=None, help="epochs of the full training per target")
    parser.add_argument("--estimator", default=None, metavar="EXPR",
                        help="BN-NAS path: search (objectives estimate,<cost>) and shortlist by a training-free "
                             "estimator expression of children sliced from the trained supernet: naswot, "
                             "fuse:naswot*2+flops, vote:synflow+jacov+snip, ranker:FILE; default: the BN indicator "
                             "(bn_score)")
    add_search_options(parser)
    # the funnel's prescreen is a broad sample: a sampler that converges (nsga2) would crowd the
    # cheap end of the front, and candidates must reach up to every budget
    parser.set_defaults(trials=1000, search_batch=200, sampler="random")
    add_address(parser)
    add_max_failures(parser)
    add_input(parser)
    add_speed_options(parser)


def run(args: argparse.Namespace, data: DataSplits | None = None) -> int:
    """The main job; ``data`` lets a driver that runs many jobs (benchmarks) decode images once."""
    clock = StageClock()
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    space = load_space(args.space)
    search = _search_config(args, space)
    cost_name = cost_objective(search.objectives)
    ranked_by = quality_objective(search.objectives) if args.mode == "bn_only" else "calibrated accuracy"
    targets = parse_targets(args.targets, search.parsed_constraints, cost_name)
    run = RunDir(args.out)
    if (run.root / SUMMARY_FILE).exists():
        return _show_finished(run)
    data = load_data(args.data, seed=args.seed) if data is None else data
    recipe = _recipe(args, data)
    cheap = CheapObjectives(space, data.num_classes, data.channels, latency_table(args))
    budgets = resolve_targets(targets, cheap, cost_name, search.parsed_constraints, search.seed)
    ensure_ray(args.address)
    if args.mode == "full" and isinstance(space.spec, MobileNetSpec):
        space = with_stage_skip(space)  # BigNAS's skip connection at stage transitions
    config = _training(args, space)
    logger.info(f"1/4 train {space.name} ({config.mode}, {config.sampling} sampling) on {args.workers} workers: "
          f"{data.summary()}")
    # --input stream: the supernet stage streams its images through Ray Data; the later stages use ``data``
    streamed = resolve_input(args.data, args.input) == "stream"
    trained = train_supernet(space, args.data if streamed else data, config,
                             Scaling(num_workers=args.workers, use_gpu=args.gpu), out_dir=run.root / "train",
                             name="supernet", address=args.address, max_failures=max_failures(args),
                             input="stream" if streamed else "memory")
    checkpoint = load_checkpoint(trained.checkpoint)
    clock.lap("train supernet")
    pool = pool_config(args, args.seed, space)
    funnel = None
    if args.mode == "full":
        logger.info(f"2/4 coarse-to-fine selection under {cost_name} budgets {[f'{b:,.0f}' for b in budgets]}")
        finetune = (recipe.final.replace(epochs=args.finetune_epochs, lr=FINETUNE_LR, bn_layout=config.bn_layout)
                    if args.finetune_epochs else None)
        finals = bignas_finals(checkpoint, data, run, pool, budgets, cheap, cost_name, args.perturbations,
                               args.seed, finetune)
    else:
        with_estimator = f" (estimator {search.estimator})" if search.estimator else ""
        logger.info(f"2/4 search {search.trials} children with {search.sampler} over {','.join(search.objectives)}"
                    f"{with_estimator}")
        finals, funnel = bnnas_finals(checkpoint, data, run, pool, search, budgets, cheap, recipe)
    clock.lap("select and train children")
    logger.info(f"3/4 test {len(finals)} final model(s) once each on {len(data.test)} held-out images, export")
    store = ResultStore(run.results, space)
    frame = deliver(space, data, finals, cost_name, run.root, store, cheap, config.bn_layout, clock.seconds,
                    estimator=search.estimator if args.mode == "bn_only" else None,
                    selection=funnel.to_dict() if funnel else None)
    if args.mode == "bn_only":
        record_stage(run.root, search.run_id, "test", [{"arch": r["arch"], "test_top1": r["test_top1"],
                                                         "val_top1": r["val_top1"]} for r in frame.to_dict("records")])
    logger.info("4/4 report")
    plot = _report(run, store, cost_name, search.evaluator if args.mode == "bn_only" else "calibrate")
    logger.info(f"done in {clock.total():.0f}s, children ranked by {search.estimator or ranked_by}: "
                f"models {run.root / 'models'}, results {run.results}, plot {plot}")
    return 0


def _search_config(args: argparse.Namespace, space: SearchSpace) -> SearchConfig:
    """The search flags; with an estimator (``--estimator``, or a measured default), objectives estimate,<cost>."""
    search = search_config(args)
    estimator = main_job_estimator(args.estimator, space)
    if estimator is None:
        return search
    if args.mode == "full":
        raise ConfigError(f"--estimator {estimator} ranks the BN-NAS path's search (--mode bn_only); the BigNAS path "
                          "(--mode full) selects by calibrated accuracy")
    return replace(search, objectives=("estimate", cost_objective(search.objectives)), estimator=estimator)


class StageClock:
    """Seconds per stage of the main job, for the summary file."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.started


def _report(run: RunDir, store: ResultStore, cost_name: str, search_evaluator: str) -> Path:
    """The final table (test top-1 shown here, once), the plot, and the search stage's front."""
    summary = json.loads((run.root / SUMMARY_FILE).read_text())
    plot = plot_main_job(store.to_pandas(), cost_name, summary["baselines"], run.report / "final.png",
                         summary.get("selection"))
    write_report(load_report(run.root, evaluator=search_evaluator), run.report)
    _print_summary(pd.DataFrame(summary["models"]), cost_name, summary)
    return plot


def _training(args: argparse.Namespace, space) -> TrainConfig:
    """BN-NAS's short BN-only run, or BigNAS's full recipe; --epochs/--lr/--sampling, --amp and
    --channels-last override."""
    common = {"train_images": args.train_images, "seed": args.seed, "sampling": args.sampling or default_sampling(space),
              **speed_options(args)}
    default_epochs = FULL_MODE_EPOCHS if args.mode == "full" else cast(int, DEFAULT_TRAINING["epochs"])
    epochs = default_epochs if args.epochs is None else args.epochs
    if args.mode == "full":
        return bignas_recipe(epochs, args.lr, **common)
    return TrainConfig.from_dict({**DEFAULT_TRAINING, **common, "epochs": epochs,
                                  "lr": args.lr or DEFAULT_TRAINING["lr"]})


def _recipe(args: argparse.Namespace, data):
    recipe = default_recipe(data, gpus=1.0 if args.gpu else 0.0)
    if args.perturbations < 0 or args.finetune_epochs < 0:
        raise ConfigError(f"--perturbations and --finetune-epochs must be >= 0, got {args.perturbations}, "
                          f"{args.finetune_epochs}")
    short = recipe.short if args.short_epochs is None else recipe.short.replace(epochs=args.short_epochs)
    final = recipe.final if args.final_epochs is None else recipe.final.replace(epochs=args.final_epochs)
    return replace(recipe, short=short, final=final, per_target=args.per_target, shortlist=args.shortlist)


def _print_summary(frame: pd.DataFrame, cost_name: str, summary: dict) -> None:
    print(format_final_table(frame, cost_name, summary.get("test_reads")))
    for baseline in summary["baselines"]:
        print(f"  baseline {baseline['model']}, same split: {baseline['test_accuracy']:.4f}")


def _show_finished(run: RunDir) -> int:
    summary = json.loads((run.root / SUMMARY_FILE).read_text())
    logger.info(f"{run.root} holds a finished run (its test split was read once, when it finished):")
    _print_summary(pd.DataFrame(summary["models"]), summary["cost"], summary)
    return 0
