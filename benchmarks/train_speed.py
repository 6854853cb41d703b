"""Supernet training speed: bn_only (BN-NAS) against full (BigNAS), and one gradient all-reduce
per step against one per child, in one run.

    python -m benchmarks.train_speed                # mbv3_cifar on CIFAR-10, 2 gloo workers
    python -m benchmarks.train_speed --gpu          # also one GPU worker, when a GPU is present

Both modes train the same supernet on the same images with the sandwich rule (largest,
smallest and 2 random children per step), on the workers under each ``grad_sync``: "member"
(before: DDP all-reduces after every child's backward) and "step" (after: once per optimiser
step, the default). Reported per run: images/s, step time and the bytes DDP all-reduces per step
(counted by a comm hook); then, on each "step" row, its ratios to the "member" row of its mode
(bytes and step time), and on the bn_only rows the bn_only/full ratios. One GPU worker has no
all-reduce, so it runs "step" only.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import OUT, cifar_spec, table, write_json
from raynas.data import load_data
from raynas.ray_env import ensure_ray
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, train_supernet


SYNCS = ("member", "step")
"""grad_sync before (one all-reduce per child) and after (one per optimiser step)."""


def measure(space, data, mode: str, sync: str, scaling: Scaling, args) -> dict:
    config = TrainConfig(mode=mode, grad_sync=sync, epochs=args.epochs, batch_size=args.batch_size, lr=0.1,
                         train_images=args.images, log_every_epoch=False)
    result = train_supernet(space, data, config, scaling, out_dir=OUT / "train_speed_runs",
                            name=f"{mode}-{sync}-{'gpu' if scaling.use_gpu else 'cpu'}-{int(time.time())}")
    last = result.metrics[-1]  # the first epoch pays for warm-up; time the last one
    return {"mode": mode, "grad_sync": sync, "device": "gpu" if scaling.use_gpu else f"cpu x{scaling.num_workers}",
            "images_per_s": last["images_per_s"], "step_ms": 1000 * last["step_seconds"],
            "trainable_MB": last["trainable_bytes"] / 1e6,
            "allreduce_MB_per_step": last["allreduce_bytes_per_step"] / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="mbv3_cifar")
    parser.add_argument("--data", default=None, help="default: CIFAR-10 JPEGs from ../shared/data")
    parser.add_argument("--images", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="per worker")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    ensure_ray(quiet=True)
    space = load_space(args.space)
    data = load_data(args.data or cifar_spec(), max_val_images=100)
    setups = [Scaling(num_workers=args.workers)]
    if args.gpu and torch.cuda.is_available():
        setups.append(Scaling(num_workers=1, use_gpu=True))
    rows = []
    for scaling in setups:
        syncs = SYNCS if scaling.num_workers > 1 else ("step",)
        runs = {(mode, sync): measure(space, data, mode, sync, scaling, args)
                for mode in ("bn_only", "full") for sync in syncs}
        compare(runs)
        rows += runs.values()
    columns = ["mode", "grad_sync", "device", "images_per_s", "step_ms", "trainable_MB", "allreduce_MB_per_step",
               "bytes_vs_member", "step_time_vs_member", "speedup_vs_full", "allreduce_ratio"]
    print(f"\ntrain speed: {space.name}, {args.images} images/epoch, batch {args.batch_size}/worker, "
          f"sandwich of 4 children, last of {args.epochs} epochs")
    print(table(rows, columns))
    print(f"wrote {write_json('train_speed', {'args': vars(args), 'rows': rows})}")


def compare(runs: dict[tuple[str, str], dict]) -> None:
    """Add after/before ratios to each "step" row, and bn_only/full ratios to the bn_only rows."""
    for (mode, sync), row in runs.items():
        before = runs.get((mode, "member"))
        if sync == "step" and before is not None:
            row["bytes_vs_member"] = row["allreduce_MB_per_step"] / max(before["allreduce_MB_per_step"], 1e-12)
            row["step_time_vs_member"] = row["step_ms"] / before["step_ms"]
        full = runs[("full", sync)]
        if mode == "bn_only":
            row["speedup_vs_full"] = row["images_per_s"] / full["images_per_s"]
            row["allreduce_ratio"] = row["allreduce_MB_per_step"] / max(full["allreduce_MB_per_step"], 1e-12)


if __name__ == "__main__":
    main()
