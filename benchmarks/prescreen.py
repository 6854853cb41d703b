"""Prescreen speed: what ``raynas search --prescreen N`` spends before its first trial.

    .venv/bin/python -m benchmarks.prescreen   # mbv3_cifar; bn_score,flops and bn_score,flops,params; N = 1e4..1e6
    .venv/bin/python -m benchmarks.prescreen --n 1e6 --objectives bn_score,flops,params \
        --constraint "flops<=2e7" --keep 500

Each row runs the search's own prescreen (``search`` with ``prescreen=N`` and one trial, on a pool
of evaluator actors) and reads the seconds of each step back from its prescreen file: sample (the
index matrix), dedup, cost (FLOPs/params/latency and constraints), score (BN score on the actors),
front (exact fronts). "driver cpu s" is the driver process's CPU seconds over those steps (BN
scores run on the actors): other load on the machine does not inflate it. "search s" is the whole
``search`` call: run folder, Optuna study, prescreen, enqueueing the kept children, one trial.

Without --checkpoint it writes an untrained checkpoint of --space whose BN gammas are drawn from
N(1, 0.1), seeded: BN-only training moves gammas about that much (DESIGN.md), so scores spread and
fronts have a realistic size. The scores mean nothing; the speed is what is measured. Writes
benchmarks/out/prescreen.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from benchmarks.common import table, write_json
from raynas.ray_env import ensure_ray
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.prescreen import META_KEY, prescreen_path
from raynas.search.recipes import default_depth_rule
from raynas.search.study import SearchConfig, search
from raynas.space import load_space
from raynas.supernet import BATCHNORMS, build_supernet
from raynas.train import DataInfo, LoadedCheckpoint, TrainConfig, load_checkpoint
from raynas.train.checkpoint import write_checkpoint

CIFAR = DataInfo("cifar10", num_classes=10, in_channels=3, image_size=32, mean=(0.4914, 0.4822, 0.4465),
                 std=(0.2470, 0.2435, 0.2616))
DEFAULT_OBJECTIVES = ["bn_score,flops", "bn_score,flops,params"]
COLUMNS = ["objectives", "N", "distinct", "feasible", "front", "kept", "sample_s", "dedup_s", "cost_s", "score_s",
           "front_s", "prescreen_s", "driver_cpu_s", "search_s"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="mbv3_cifar")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint (default: random gammas, see above)")
    parser.add_argument("--n", type=lambda s: [int(float(x)) for x in s.split(",")],
                        default=[10_000, 100_000, 1_000_000], help="comma-separated sample sizes (default 1e4,1e5,1e6)")
    parser.add_argument("--objectives", action="append", default=None,
                        help="comma-separated, repeatable (default: bn_score,flops and bn_score,flops,params)")
    parser.add_argument("--constraint", action="append", default=[])
    parser.add_argument("--keep", type=int, default=0, help="--prescreen-keep")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def random_gamma_checkpoint(space_name: str, folder: Path, seed: int) -> LoadedCheckpoint:
    """An untrained supernet whose BN gammas are N(1, 0.1), written as training writes a checkpoint."""
    space = load_space(space_name)
    supernet = build_supernet(space, CIFAR.num_classes, CIFAR.in_channels, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in supernet.modules():
            if isinstance(module, BATCHNORMS):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=generator))
    meta = {"format": "raynas-checkpoint/1", "run_name": "prescreen-bench", "epoch": 1, "space": space.definition,
            "space_name": space.name, "config": TrainConfig().to_dict(), "data": CIFAR.to_dict(), "metrics": []}
    return load_checkpoint(write_checkpoint(folder / "checkpoint_epoch_0001", {"model": supernet.state_dict()}, meta))


def measure(checkpoint: LoadedCheckpoint, pool: EvaluatorPool, objectives: str, n: int, args: argparse.Namespace,
            out: Path) -> dict[str, Any]:
    config = SearchConfig(objectives=tuple(objectives.split(",")), constraints=tuple(args.constraint),
                          trials=1, batch_size=1, top_k=0, seed=args.seed, prescreen=n, prescreen_keep=args.keep)
    started = time.perf_counter()
    search(checkpoint, pool, out, config, progress=False)
    seconds = time.perf_counter() - started
    stats = json.loads(pq.read_schema(prescreen_path(out, config.run_id)).metadata[META_KEY])["stats"]
    counts = {k: v for k, v in stats.items() if k not in ("sampled", "seconds")}
    return {"objectives": objectives, "N": n, **counts, "prescreen_s": stats["seconds"], "search_s": seconds}


def main() -> None:
    args = parse_args()
    ensure_ray(quiet=True)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        checkpoint = (load_checkpoint(args.checkpoint) if args.checkpoint
                      else random_gamma_checkpoint(args.space, work_dir / "ckpt", args.seed))
        indicator = {"depth_rule": default_depth_rule(checkpoint.space)}  # as `raynas search` scores
        pool_config = PoolConfig(num_actors=args.actors, num_cpus=0.5, indicator=indicator)
        with EvaluatorPool(checkpoint, None, pool_config) as pool:
            pool.score([checkpoint.space.min()])  # actors up before timing
            rows = [measure(checkpoint, pool, objectives, n, args, work_dir / f"run-{i}-{n}")
                    for i, objectives in enumerate(args.objectives or DEFAULT_OBJECTIVES) for n in args.n]
    constraints = ", ".join(args.constraint) or "none"
    print(f"\nprescreen on {checkpoint.space.name} (constraints: {constraints}; keep {args.keep}; "
          f"{args.actors} actors)")
    print(table(rows, COLUMNS))
    print(f"wrote {write_json('prescreen', {'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
