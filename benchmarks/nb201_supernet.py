"""Weight-sharing rankers of NAS-Bench-201 cells: a BigNAS supernet and a BN-only one, on CIFAR-10.

    python -m benchmarks.nb201_supernet --epochs 6 --train-images 20000
    python -m benchmarks.reference_ranking --scores benchmarks/out/nb201_supernet_scores.csv

Both supernets use the reduced skeleton a CPU can train (``--channels``, ``--cells-per-stage``,
images resized once to ``--resolution``; the cell and so every NB201 key is unchanged):

- **BigNAS** (``mode: full``): sandwich rule with inplace distillation, every weight trained;
  each held-out cell is then BN-calibrated on the calibration split and scored by val top-1
  (``calibrated accuracy``), the way BigNAS deploys children without retraining;
- **BN-NAS** (``mode: bn_only``): random, frozen convolutions, only BN parameters (and the
  classifier) trained; each cell is scored by the BN indicator (depth rules ``sum``, ``mean``).

The scores of the held-out cells (``--held-out``, seed ``--split-seed``: the same 200 cells that
``raynas bpe --held-out 200`` never looks at) go to ``benchmarks/out/nb201_supernet_scores.csv``,
one column per ranker, which ``benchmarks.reference_ranking --scores`` judges beside the others.
Training resumes from ``benchmarks/out/nb201_supernet_runs`` when re-run with the same flags.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import pandas as pd

from benchmarks.common import OUT, cifar_spec, write_json
from benchmarks.reference_ranking import DEV_CSV
from raynas.bpe import load_reference_column
from raynas.bpe.proxy import proxy_child_space, resized
from raynas.bpe.proxy_setting import ProxySetting
from raynas.bpe.ranking import holdout_split
from raynas.data import DataSplits, ImageSet, load_data
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.space import load_space
from raynas.train import TrainConfig, load_checkpoint, train_supernet


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells-per-stage", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--full-lr", type=float, default=0.1, help="SGD lr of the BigNAS supernet")
    parser.add_argument("--bn-lr", type=float, default=0.5, help="SGD lr of the BN-only supernet")
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--column", default="cifar10_test_acc_200ep")
    return parser.parse_args()


def resized_splits(data: DataSplits, size: int) -> DataSplits:
    """Every split resized once to ``size`` (an nb201 child reads its images at their own size)."""
    def one(split: ImageSet) -> ImageSet:
        return replace(split, images=resized(split.images, size))

    return replace(data, name=f"{data.name}@{size}px", train=one(data.train), calib=one(data.calib),
                   val=one(data.val), test=one(data.test))


def main() -> None:
    args = parse_args()
    nb201 = load_space("nb201")
    setting = ProxySetting(channels=args.channels, cells_per_stage=args.cells_per_stage, resolution=args.resolution)
    space = proxy_child_space(nb201, setting)
    reference = load_reference_column(DEV_CSV, nb201, args.column)
    keys = list(holdout_split(reference, args.held_out, args.split_seed)[1].keys)
    data = resized_splits(load_data(cifar_spec(), seed=0), args.resolution)
    print(data.summary(), flush=True)
    common = {"epochs": args.epochs, "batch_size": 128, "train_images": args.train_images, "classifier": "trainable",
              "seed": 0}
    recipes = {"full": TrainConfig(mode="full", lr=args.full_lr, weight_decay=5e-4, **common),
               "bn_only": TrainConfig(mode="bn_only", lr=args.bn_lr, **common)}
    tag = f"c{args.channels}-n{args.cells_per_stage}-r{args.resolution}-e{args.epochs}-i{args.train_images}"
    scores: dict[str, dict[str, float]] = {}
    timings = {}
    for name, config in recipes.items():
        started = time.perf_counter()
        result = train_supernet(space, data, config, out_dir=OUT / "nb201_supernet_runs", name=f"{name}-{tag}")
        timings[f"train {name} s"] = time.perf_counter() - started
        supernet = load_checkpoint(result.checkpoint).supernet
        archs = [space.arch(k) for k in keys]
        for rule in ("sum", "mean"):
            values = BNIndicator(depth_rule=rule).fit(supernet).score(archs)
            scores[f"bn_score ({rule}) @ {name} {tag}"] = dict(zip(keys, map(float, values)))
        if name == "full":
            started = time.perf_counter()
            scores[f"calibrated accuracy @ BigNAS {tag}"] = {
                key: calibrate_and_evaluate(supernet, arch, data.calib, data.val, data.mean, data.std,
                                            CalibrationConfig())["accuracy"] for key, arch in zip(keys, archs)}
            timings["calibrate + evaluate s per cell"] = (time.perf_counter() - started) / len(keys)
        print(f"{name}: {timings}", flush=True)
    frame = pd.DataFrame({"arch": keys, **{name: [s[k] for k in keys] for name, s in scores.items()}})
    path = OUT / "nb201_supernet_scores.csv"
    frame.to_csv(path, index=False)
    write_json("nb201_supernet", {"args": vars(args), "timings": timings, "scores_csv": str(path)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
