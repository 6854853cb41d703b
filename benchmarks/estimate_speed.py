"""Time per architecture: BN indicator (a table lookup) against BN calibration + evaluation.

    python -m benchmarks.estimate_speed            # mbv3_cifar on CIFAR-10

BN-NAS claims its indicator evaluates a subnet over 600,000x faster than SPOS-style evaluation.
Both sides here run on the same machine, in one process, on the same trained supernet.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import OUT, cifar_spec, table, write_json
from raynas.data import load_data
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.ray_env import ensure_ray
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="mbv3_cifar")
    parser.add_argument("--data", default=None)
    parser.add_argument("--score-archs", type=int, default=1_000_000)
    parser.add_argument("--calib-archs", type=int, default=5)
    parser.add_argument("--calib-images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=10000)
    args = parser.parse_args()
    ensure_ray(quiet=True)
    space = load_space(args.space)
    data = load_data(args.data or cifar_spec(), max_val_images=args.val_images)
    config = TrainConfig(mode="bn_only", epochs=1, train_images=512, log_every_epoch=False)
    checkpoint = load_checkpoint(train_supernet(space, data, config, Scaling(num_workers=0),
                                                out_dir=OUT / "estimate_speed_runs", name=f"es-{int(time.time())}").checkpoint)
    torch.set_num_threads(1)  # both sides on one core
    started = time.perf_counter()
    indicator = BNIndicator().fit(checkpoint.supernet)
    fit_seconds = time.perf_counter() - started
    matrix = space.sample_index_matrix(args.score_archs, seed=0)
    started = time.perf_counter()
    indicator.score(matrix)
    score_seconds = time.perf_counter() - started
    calibration = CalibrationConfig(images=args.calib_images)
    archs = space.from_index_matrix(space.sample_index_matrix(args.calib_archs, seed=1))
    started = time.perf_counter()
    for arch in archs:
        calibrate_and_evaluate(checkpoint.supernet, arch, data.calib, data.val, data.mean, data.std, calibration)
    calib_seconds = time.perf_counter() - started
    per_score = score_seconds / args.score_archs
    per_calib = calib_seconds / args.calib_archs
    rows = [
        {"estimator": "BN indicator (table lookup)", "archs": args.score_archs, "seconds": score_seconds,
         "us_per_arch": per_score * 1e6, "archs_per_s": 1 / per_score},
        {"estimator": f"calibrate ({args.calib_images} img) + evaluate ({len(data.val)} img)", "archs": args.calib_archs,
         "seconds": calib_seconds, "us_per_arch": per_calib * 1e6, "archs_per_s": 1 / per_calib},
    ]
    print(f"\nestimate speed on {space.name}, one CPU thread (indicator tables built once in {fit_seconds * 1e3:.1f} ms)")
    print(table(rows, ["estimator", "archs", "seconds", "us_per_arch", "archs_per_s"]))
    print(f"ratio: the BN indicator is {per_calib / per_score:,.0f}x faster per architecture (BN-NAS claims 600,000x)")
    print(f"wrote {write_json('estimate_speed', {'args': vars(args), 'rows': rows, 'ratio': per_calib / per_score, 'fit_seconds': fit_seconds})}")


if __name__ == "__main__":
    main()
