"""BN-calibrate architectures of a checkpoint on Ray actors and measure their accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from raynas.cli.common import add_address, positive_float, positive_int
from raynas.cli.estimate_common import add_arch_selection, checkpoint_data, common_fields, select_archs, write_rows
from raynas.cost import CostModel
from raynas.estimate.calibration import CalibrationConfig
from raynas.ray_env import ensure_ray
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.recipes import resolve_depth_rule
from raynas.space import Arch, SearchSpace
from raynas.train import load_checkpoint
from raynas.logs import Progress, get_logger

CALIBRATION_BATCH = 4
"""Architectures per actor call: a round of one call per actor ends with a progress line."""
logger = get_logger(__name__)


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default=None, help="DATA; default: the checkpoint's own dataset")
    add_arch_selection(parser, allow_all=False)
    add_pool_options(parser)
    parser.set_defaults(depth_rule=None)  # calibration reads no BN score: the pool's indicator keeps its default
    parser.add_argument("--out", type=Path, required=True, help="output .parquet file")
    add_address(parser)


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calib-images", type=positive_int, default=2000,
                        help="N images for BN calibration (recorded)")
    parser.add_argument("--actors", type=positive_int, default=1, help="evaluator actors")
    parser.add_argument("--actor-cpus", type=positive_float, default=1.0)
    parser.add_argument("--gpu", action="store_true", help="one GPU per evaluator actor")


def pool_config(args: argparse.Namespace, seed: int, space: SearchSpace | None = None) -> PoolConfig:
    """The evaluator pool of a command. ``args.depth_rule`` None means ``default_depth_rule(space)``,
    or the BN indicator's own default when no space is given."""
    depth_rule = resolve_depth_rule(args.depth_rule, space)
    return PoolConfig(num_actors=args.actors, num_cpus=args.actor_cpus, num_gpus=1.0 if args.gpu else 0.0,
                      calibration=CalibrationConfig(images=args.calib_images, seed=seed),
                      indicator={} if depth_rule is None else {"depth_rule": depth_rule})


def calibrate_with_progress(pool: EvaluatorPool, archs: list[Arch]) -> list[dict[str, Any]]:
    """``pool.calibrate_and_evaluate`` in rounds of one batch per actor, a progress line after each."""
    step = CALIBRATION_BATCH * len(pool.actors)
    shown = Progress(logger, "calibrated", len(archs), "archs")
    results: list[dict[str, Any]] = []
    for start in range(0, len(archs), step):
        results += pool.calibrate_and_evaluate(archs[start:start + step], batch_size=CALIBRATION_BATCH)
        shown.update(len(results))
    return results


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)  # every input is read before Ray starts, so bad ones fail fast
    space = checkpoint.space
    archs = select_archs(args, space)
    data = checkpoint_data(checkpoint, args.data)
    ensure_ray(args.address)
    logger.info(f"calibrating {len(archs)} architecture(s) on {args.actors} actor(s), {args.calib_images} images each")
    with EvaluatorPool(checkpoint, data, pool_config(args, args.seed)) as pool:
        results = calibrate_with_progress(pool, archs)
    costs = CostModel(space, checkpoint.data.num_classes, checkpoint.data.in_channels).costs(archs)
    base = common_fields(checkpoint, "calibrate", args.seed)
    rows = [{**base, **result, "trial": i, "flops": int(costs["flops"][i]), "params": int(costs["params"][i])}
            for i, result in enumerate(results)]
    write_rows(rows, space, args.out)
    ok = [r for r in rows if r["status"] == "ok"]
    print(f"calibrated {len(ok)}/{len(rows)} architectures on {args.calib_images} images each")
    if ok:
        best = max(ok, key=lambda r: r["accuracy"])
        print(f"best top-1 {best['accuracy']:.4f}: {best['arch']}")
    print(f"wrote {args.out}")
    return 0
