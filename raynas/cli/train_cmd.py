"""Train a supernet with the sandwich rule (BN-only or full) on Ray Train."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from raynas.cli.common import DEFAULT_TRAINING, add_training, scaling, train_config
from raynas.data import INPUTS, open_data
from raynas.errors import ConfigError
from raynas.space import load_space
from raynas.train import train_supernet
from raynas.train.config import AMPS, TrainConfig, bignas_recipe

CLUSTER_MAX_FAILURES = 3
"""Default restarts on a cluster, where nodes come and go; a local run has none to survive."""


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="space name or .yaml path")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for runs and checkpoints")
    add_training(parser)
    add_max_failures(parser)
    add_input(parser)
    add_speed_options(parser)


def add_max_failures(parser: argparse.ArgumentParser) -> None:
    """``--max-failures``: how often a lost or failed worker group restarts from the latest checkpoint."""
    parser.add_argument("--max-failures", type=int, default=None, metavar="N",
                        help="restart lost or failed training workers from the latest checkpoint up to N times; "
                             f"default 0 on a local Ray instance, {CLUSTER_MAX_FAILURES} with --address (a cluster)")


def add_input(parser: argparse.ArgumentParser) -> None:
    """``--input``: how supernet training reads its images (decoded in memory, or streamed by Ray Data)."""
    parser.add_argument("--input", choices=INPUTS, default="auto",
                        help="memory: decode the training images once, here; stream: list the files here and "
                             "decode them on the cluster with Ray Data (imagefolder:ROOT, shards:ROOT); "
                             "auto (default): stream when the decoded images would not fit comfortably in memory")


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """``--amp`` and ``--channels-last``: supernet training speed options for GPUs (default off)."""
    parser.add_argument("--amp", choices=list(AMPS), default=None,
                        help="bf16: run the training forwards and losses under bfloat16 autocast (GPUs with bf16 "
                             "support); default off (float32)")
    parser.add_argument("--channels-last", action="store_true", default=None,
                        help="train with model and inputs in the channels-last memory format (faster convs on "
                             "tensor-core GPUs, slower on CPUs); default off")


def speed_options(args: argparse.Namespace) -> dict[str, Any]:
    """The speed flags given, as TrainConfig keys; an absent flag keeps the config's value."""
    return {k: v for k, v in {"amp": args.amp, "channels_last": args.channels_last}.items() if v is not None}


def max_failures(args: argparse.Namespace) -> int:
    """``--max-failures``, or its default for where the run goes (RAY_ADDRESS joins a cluster too)."""
    if args.max_failures is None:
        return CLUSTER_MAX_FAILURES if args.address or os.environ.get("RAY_ADDRESS") else 0
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {args.max_failures}")
    return args.max_failures


def learning_defaults(mode: str, chosen: dict[str, Any]) -> dict[str, Any]:
    """Defaults under which a short run learns on the embedded data: BN-only takes the main job's
    rate and a trainable classifier (``run``'s defaults); full mode takes BigNAS's recipe."""
    if mode == "full":
        return bignas_recipe(int(chosen.get("epochs", TrainConfig.epochs))).to_dict()
    return {"lr": DEFAULT_TRAINING["lr"], "classifier": DEFAULT_TRAINING["classifier"]}


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    config = train_config(args, learning_defaults).replace(**speed_options(args))
    # opened here (listed, or decoded) so that a bad DATA fails before Ray starts
    data = open_data(args.data, seed=config.seed, input=args.input, download=args.download)
    result = train_supernet(space, data, config, scaling(args), args.out, args.name, args.address,
                            max_failures=max_failures(args), input=args.input)
    last = result.metrics[-1]
    print(f"trained {space.name} ({config.mode}) for {last['epoch']} epochs: "
          f"loss max {last['loss_max']:.3f}, {last['images_per_s']:.0f} img/s")
    print(f"checkpoint: {result.checkpoint}")
    return 0
