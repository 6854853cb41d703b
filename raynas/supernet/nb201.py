"""NAS-Bench-201 cell supernet (Dong & Yang, ICLR 2020): one weight set per candidate op per edge.

The macro skeleton is the benchmark's: stem conv, three stages of N cells at C, 2C and 4C
channels joined by residual reduction blocks, then BN-ReLU, global pooling and a classifier.
Every cell of a child uses the same cell architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from raynas.space import Arch, SearchSpace
from raynas.space.families.nb201 import EDGES, NB201Spec, edge_name
from raynas.supernet.base import Supernet


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (no bias) -> BN, the benchmark's convolution op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)
        )


class Zero(nn.Module):
    """The `none` op: the edge carries nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    builders: dict[str, Callable[[], nn.Module]] = {
        "none": Zero,
        "skip_connect": nn.Identity,
        "nor_conv_1x1": lambda: ReLUConvBN(channels, channels, 1),
        "nor_conv_3x3": lambda: ReLUConvBN(channels, channels, 3),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
    }
    return builders[name]()


class Cell(nn.Module):
    """A 4-node cell; ``edges[edge][op]`` holds every candidate op (supernet) or just one (child)."""

    def __init__(self, edges: nn.ModuleDict) -> None:
        super().__init__()
        self.edges = edges

    def op(self, edge: str, op: str) -> nn.Module:
        """The module of candidate ``op`` on ``edge``."""
        return cast(nn.ModuleDict, self.edges[edge])[op]

    def forward(self, x: torch.Tensor, ops: dict[str, str]) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            # every node has at least one incoming edge, so the sum is a tensor
            node = sum(self.op(edge_name(i, j), ops[edge_name(i, j)])(nodes[i]) for i in range(j))
            nodes.append(cast(torch.Tensor, node))
        return nodes[3]


class ResNetReduction(nn.Module):
    """The benchmark's reduction block: two ReLU-conv-BN, shortcut avg-pool + 1x1 conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Stem, cells and reductions, head. ``ops`` picks each edge's op in every cell."""

    def __init__(self, spec: NB201Spec, num_classes: int, in_channels: int, ops_per_edge: dict[str, tuple[str, ...]]):
        super().__init__()
        c = spec.channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.layers = nn.ModuleList()
        for stage in range(3):
            width = c * 2**stage
            if stage > 0:
                self.layers.append(ResNetReduction(width // 2, width))
            for _ in range(spec.cells_per_stage):
                edges = nn.ModuleDict(
                    {edge: nn.ModuleDict({op: make_op(op, width) for op in ops}) for edge, ops in ops_per_edge.items()}
                )
                self.layers.append(Cell(edges))
        self.last_act = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU())
        self.classifier = nn.Linear(4 * c, num_classes)

    def run(self, x: torch.Tensor, ops: dict[str, str]) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, ops) if isinstance(layer, Cell) else layer(x)
        return self.classifier(self.last_act(x).mean((2, 3)))


class NB201Child(NB201Network):
    """A static child: each edge holds only its chosen op."""

    def __init__(self, spec: NB201Spec, num_classes: int, in_channels: int, ops: dict[str, str]) -> None:
        super().__init__(spec, num_classes, in_channels, {edge: (op,) for edge, op in ops.items()})
        self.ops = dict(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, self.ops)


class NB201Supernet(Supernet):
    """Every candidate op on every edge of every cell, with its own weights and BN."""

    def __init__(self, space: SearchSpace, num_classes: int, in_channels: int = 3, bn_layout: str = "private") -> None:
        super().__init__(space, num_classes, in_channels)
        self.spec = cast(NB201Spec, space.spec)
        self.bn_layout = "private"  # every op owns its BN by construction
        ops = {edge_name(i, j): self.spec.ops for i, j in EDGES}
        self.network = NB201Network(self.spec, num_classes, in_channels, ops)

    def _apply_arch(self, arch: Arch) -> None:
        """Nothing to set: the op choice is passed to each cell explicitly."""

    def _reset_arch(self) -> None:
        """Nothing to reset."""

    def _forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.network.run(x, {name: str(arch[name]) for name in arch})

    def _export(self, arch: Arch) -> nn.Module:
        ops = {name: str(arch[name]) for name in arch}
        child = NB201Child(self.spec, self.num_classes, self.in_channels, ops)
        source = self.network.state_dict()
        child.load_state_dict({key: source[key] for key in child.state_dict()})
        return child
