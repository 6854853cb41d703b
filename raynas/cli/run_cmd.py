"""The main job: train a supernet, search it, calibrate the best, report, export the winner.

On the embedded default (local Ray, digits, the tiny space) it runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from raynas.cli.calibrate_cmd import pool_config
from raynas.cli.common import add_address
from raynas.cli.search_cmd import add_search_options, latency_table, search_config
from raynas.data import load_data
from raynas.deploy import export_calibrated
from raynas.ray_env import ensure_ray
from raynas.results.report import RunDir, format_table, load_report, write_report
from raynas.search import EvaluatorPool
from raynas.search.study import search
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet

# BN-only training needs a far higher learning rate than full training (BN-NAS used 0.25 at
# batch 512 for ~25k steps); on the short embedded budget a trainable classifier lets it learn.
DEFAULT_TRAINING = {"mode": "bn_only", "epochs": 15, "batch_size": 64, "lr": 1.0, "classifier": "trainable"}


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="tiny", help="space name or .yaml path")
    parser.add_argument("--data", default="digits", help="digits | synthetic | cifar10:ROOT | imagefolder:ROOT")
    parser.add_argument("--out", type=Path, default=Path("runs/main"), help="run directory")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers for supernet training")
    parser.add_argument("--gpu", action="store_true", help="train and evaluate on GPUs")
    parser.add_argument("--mode", choices=["bn_only", "full"], default=DEFAULT_TRAINING["mode"])
    parser.add_argument("--epochs", type=int, default=DEFAULT_TRAINING["epochs"])
    parser.add_argument("--lr", type=float, default=DEFAULT_TRAINING["lr"])
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib-images", type=int, default=500)
    parser.add_argument("--actors", type=int, default=2, help="evaluator actors for the search")
    parser.add_argument("--actor-cpus", type=float, default=1.0)
    add_search_options(parser)
    parser.set_defaults(trials=1000, batch_size=200)
    add_address(parser)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    ensure_ray(args.address)
    space = load_space(args.space)
    run = RunDir(args.out)
    config = TrainConfig.from_dict({**DEFAULT_TRAINING, "mode": args.mode, "epochs": args.epochs, "lr": args.lr,
                                    "train_images": args.train_images, "seed": args.seed,
                                    "classifier": "trainable" if args.mode == "bn_only" else "frozen"})
    data = load_data(args.data, seed=args.seed)
    print(f"[raynas] 1/4 train {space.name} ({config.mode}, sandwich rule) on {args.workers} workers: {data.summary()}")
    trained = train_supernet(space, data, config, Scaling(num_workers=args.workers, use_gpu=args.gpu),
                             out_dir=run.root / "train", name="supernet", address=args.address)
    checkpoint = load_checkpoint(trained.checkpoint)
    print(f"[raynas] 2/4 search {args.trials} children with {args.sampler} over {args.objectives}, "
          f"then calibrate the top {args.top_k} on {args.calib_images} images")
    with EvaluatorPool(checkpoint, data, pool_config(args, args.seed)) as pool:
        result = search(checkpoint, pool, run.root, search_config(args), latency_table(args))
    print("[raynas] 3/4 report")
    report = load_report(run.root)
    paths = write_report(report, run.report)
    print(report.counts_line())
    print(format_table(report.front, report.objectives))
    best = max(result.calibrated, key=lambda r: r["accuracy"]) if result.calibrated else None
    if best is not None:
        print(f"[raynas] 4/4 export the most accurate calibrated child: {best['arch']}")
        record = export_calibrated(checkpoint, space.arch(best["arch"]), data, run.root / "best_child",
                                   pool_config(args, args.seed).calibration)
        print(f"  top-1 {record['accuracy']:.4f}, {best['flops'] / 1e6:.3f}M FLOPs -> {run.root / 'best_child'}")
    print(f"[raynas] done in {time.perf_counter() - started:.0f}s: checkpoint {trained.checkpoint}, "
          f"results {run.results}, plot {paths.get('png', paths)}")
    return 0
