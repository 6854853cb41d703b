"""Train one child from scratch with the same loop (ground truth for rankings), and ship it.

The final checkpoint's child goes to ``OUT/NAME/model/`` as a child folder (see ``raynas.deploy``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from raynas.cli.common import add_training, scaling, train_config
from raynas.cli.train_cmd import add_input
from raynas.data import open_data
from raynas.deploy import RETRAINED_CHILD_DIR, ship_retrained
from raynas.space import load_space
from raynas.train import retrain


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="space name or .yaml path")
    parser.add_argument("--arch", required=True, help="the child's canonical key (see `raynas space`)")
    parser.add_argument("--out", type=Path, default=Path("runs"))
    add_training(parser, default_mode="full")
    add_input(parser)


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    arch = space.arch(args.arch)
    config = train_config(args)
    # opened here (listed, or decoded) so that a bad DATA fails before Ray starts
    data = open_data(args.data, seed=config.seed, input=args.input, download=args.download)
    result = retrain(space, arch, data, config, scaling(args), args.out, args.name, args.address, input=args.input)
    last = result.metrics[-1]
    print(f"retrained {space.key(arch)} for {last['epoch']} epochs: val accuracy {last['val_accuracy']:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    model = ship_retrained(result.checkpoint, result.run_dir / RETRAINED_CHILD_DIR)
    print(f"model: {model} (load with raynas.supernet.load_child, or torch.jit.load(model.ts) without raynas)")
    return 0
