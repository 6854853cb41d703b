"""Train a supernet with the sandwich rule (BN-only or full) on Ray Train."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from raynas.cli.common import add_training, data_spec, scaling, train_config
from raynas.errors import ConfigError
from raynas.space import load_space
from raynas.train import train_supernet

CLUSTER_MAX_FAILURES = 3
"""Default restarts on a cluster, where nodes come and go; a local run has none to survive."""


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="space name or .yaml path")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for runs and checkpoints")
    add_training(parser)
    add_max_failures(parser)


def add_max_failures(parser: argparse.ArgumentParser) -> None:
    """``--max-failures``: how often a lost or failed worker group restarts from the latest checkpoint."""
    parser.add_argument("--max-failures", type=int, default=None, metavar="N",
                        help="restart lost or failed training workers from the latest checkpoint up to N times; "
                             f"default 0 on a local Ray instance, {CLUSTER_MAX_FAILURES} with --address (a cluster)")


def max_failures(args: argparse.Namespace) -> int:
    """``--max-failures``, or its default for where the run goes (RAY_ADDRESS joins a cluster too)."""
    if args.max_failures is None:
        return CLUSTER_MAX_FAILURES if args.address or os.environ.get("RAY_ADDRESS") else 0
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {args.max_failures}")
    return args.max_failures


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    config = train_config(args)
    result = train_supernet(space, data_spec(args), config, scaling(args), args.out, args.name, args.address,
                            max_failures=max_failures(args))
    last = result.metrics[-1]
    print(f"trained {space.name} ({config.mode}) for {last['epoch']} epochs: "
          f"loss max {last['loss_max']:.3f}, {last['images_per_s']:.0f} img/s")
    print(f"checkpoint: {result.checkpoint}")
    return 0
