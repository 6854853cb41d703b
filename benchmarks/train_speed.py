"""Supernet training speed: bn_only (BN-NAS) against full (BigNAS), in one run.

    python -m benchmarks.train_speed                # mbv3_cifar on CIFAR-10, 2 gloo workers
    python -m benchmarks.train_speed --gpu          # also one GPU worker, when a GPU is present

Both modes train the same supernet on the same images with the sandwich rule (largest,
smallest and 2 random children per step). Reported per mode: images/s, step time, and the bytes
DDP all-reduces per step (counted by a comm hook), then the bn_only/full ratio.
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


def measure(space, data, mode: str, scaling: Scaling, args) -> dict:
    config = TrainConfig(mode=mode, epochs=args.epochs, batch_size=args.batch_size, lr=0.1,
                         train_images=args.images, log_every_epoch=False)
    result = train_supernet(space, data, config, scaling, out_dir=OUT / "train_speed_runs",
                            name=f"{mode}-{'gpu' if scaling.use_gpu else 'cpu'}-{int(time.time())}")
    last = result.metrics[-1]  # the first epoch pays for warm-up; time the last one
    return {"mode": mode, "device": "gpu" if scaling.use_gpu else f"cpu x{scaling.num_workers}",
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
        pair = [measure(space, data, mode, scaling, args) for mode in ("bn_only", "full")]
        pair[0]["speedup_vs_full"] = pair[0]["images_per_s"] / pair[1]["images_per_s"]
        pair[0]["allreduce_ratio"] = pair[0]["allreduce_MB_per_step"] / max(pair[1]["allreduce_MB_per_step"], 1e-12)
        rows += pair
    columns = ["mode", "device", "images_per_s", "step_ms", "trainable_MB", "allreduce_MB_per_step",
               "speedup_vs_full", "allreduce_ratio"]
    print(f"\ntrain speed: {space.name}, {args.images} images/epoch, batch {args.batch_size}/worker, "
          f"sandwich of 4 children, last of {args.epochs} epochs")
    print(table(rows, columns))
    print(f"wrote {write_json('train_speed', {'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
