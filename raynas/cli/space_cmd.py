"""Show a space: its dimensions, the number of architectures and the FLOPs range."""

from __future__ import annotations

import argparse

from raynas.cli.common import positive_int
from raynas.cost import CostModel
from raynas.space import load_space


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="a shipped space name (tiny, mbv3_cifar, nb201, ...) or a .yaml path")
    parser.add_argument("--num-classes", type=positive_int, default=10, help="classifier outputs for the cost model")
    parser.add_argument("--in-channels", type=positive_int, default=3, help="input channels for the cost model")


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    cost = CostModel(space, args.num_classes, args.in_channels)
    print(f"space {space.name} (family {space.family}, from {space.source})")
    width = max(len(d.name) for d in space.dims)
    for d in space.dims:
        condition = f"  (if {d.parent} > {d.threshold})" if d.parent else ""
        print(f"  {d.name:<{width}}  {list(d.choices)}{condition}")
    small, large = cost.of(space.min()), cost.of(space.max())
    print(f"architectures: {space.size():,}")
    print(f"FLOPs (MACs): {small['flops'] / 1e6:,.2f}M (min) .. {large['flops'] / 1e6:,.2f}M (max)")
    print(f"params: {small['params'] / 1e6:,.3f}M (min) .. {large['params'] / 1e6:,.3f}M (max)")
    print(f"smallest: {space.key(space.min())}")
    print(f"largest:  {space.key(space.max())}")
    return 0
