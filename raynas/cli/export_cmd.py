"""Export one child of a checkpoint: BN-calibrated weights plus its architecture JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from raynas.cli.estimate_common import checkpoint_data
from raynas.deploy import export_calibrated
from raynas.estimate.calibration import CalibrationConfig
from raynas.train import load_checkpoint


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--arch", required=True, help="the child's canonical key")
    parser.add_argument("--data", default=None, help="DATA for BN calibration; default: the checkpoint's dataset")
    parser.add_argument("--calib-images", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    arch = checkpoint.space.arch(args.arch)
    data = checkpoint_data(checkpoint, args.data)
    record = export_calibrated(checkpoint, arch, data, args.out,
                               CalibrationConfig(images=args.calib_images, seed=checkpoint.config.seed))
    print(f"exported {record['arch']}: top-1 {record['accuracy']:.4f} after calibrating on "
          f"{record['calib_images']} images -> {args.out} (load with raynas.supernet.load_child)")
    return 0
