"""Train a supernet with the sandwich rule (BN-only or full) on Ray Train."""

from __future__ import annotations

import argparse
from pathlib import Path

from raynas.cli.common import add_training, data_spec, scaling, train_config
from raynas.space import load_space
from raynas.train import train_supernet


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="space name or .yaml path")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for runs and checkpoints")
    add_training(parser)


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    config = train_config(args)
    result = train_supernet(space, data_spec(args), config, scaling(args), args.out, args.name, args.address)
    last = result.metrics[-1]
    print(f"trained {space.name} ({config.mode}) for {last['epoch']} epochs: "
          f"loss max {last['loss_max']:.3f}, {last['images_per_s']:.0f} img/s")
    print(f"checkpoint: {result.checkpoint}")
    return 0
