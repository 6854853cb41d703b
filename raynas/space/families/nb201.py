"""The NAS-Bench-201 cell family (Dong & Yang, ICLR 2020).

A cell has 4 nodes; every edge i -> j (i < j) carries one op. The six dimensions are named
``edge_{i}_{j}`` and the canonical key is the benchmark's own string, for example
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.
"""

from __future__ import annotations

from dataclasses import dataclass

from raynas.errors import ArchError
from raynas.space._family import Family, register_family
from raynas.space.arch import Arch
from raynas.space.dimension import Choice, Dimension
from raynas.space.reader import Node

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = tuple((i, j) for j in range(1, 4) for i in range(j))
FAMILY_KEYS = ("ops", "channels", "cells_per_stage", "resolution")


def edge_name(i: int, j: int) -> str:
    return f"edge_{i}_{j}"


@dataclass(frozen=True)
class NB201Spec:
    """Parsed ``family: nb201`` space file."""

    ops: tuple[str, ...]
    channels: int
    cells_per_stage: int
    input_resolution: int

    @classmethod
    def parse(cls, root: Node) -> "NB201Spec":
        ops_node = root.child("ops")
        ops = ops_node.choices(kind="str")
        unknown = [op for op in ops if op not in NB201_OPS]
        if unknown:
            raise ops_node.error(f"unknown op(s) {unknown}; valid ops: {list(NB201_OPS)}")
        return cls(
            ops=ops,
            channels=root.get("channels", 16).integer(minimum=1),
            cells_per_stage=root.get("cells_per_stage", 5).integer(minimum=1),
            input_resolution=root.get("resolution", 32).integer(minimum=4),
        )

    def dimensions(self) -> tuple[Dimension, ...]:
        return tuple(Dimension(edge_name(i, j), self.ops, "op") for i, j in EDGES)

    def resolution(self, arch: Arch) -> int:
        return self.input_resolution

    def format_key(self, arch: Arch) -> str:
        nodes = ["|".join(f"{arch[edge_name(i, j)]}~{i}" for i in range(j)) for j in range(1, 4)]
        return "+".join(f"|{node}|" for node in nodes)

    def parse_key(self, key: str) -> dict[str, Choice]:
        nodes = key.strip().split("+")
        if len(nodes) != 3:
            raise ArchError(f"NAS-Bench-201 string must have 3 '+'-separated nodes, got {key!r}")
        values: dict[str, Choice] = {}
        for j, node in enumerate(nodes, start=1):
            tokens = [t for t in node.split("|") if t]
            if len(tokens) != j:
                raise ArchError(f"node {j} of {key!r} must have {j} inputs, got {node!r}")
            for token in tokens:
                op, _, source = token.partition("~")
                if not source.isdigit() or int(source) >= j:
                    raise ArchError(f"{token!r} in {key!r} must be op~i with i < {j}")
                values[edge_name(int(source), j)] = op
        return values


FAMILY = register_family(Family(
    name="nb201",
    keys=FAMILY_KEYS,
    parse=NB201Spec.parse,
    supernet="raynas.supernet.nb201:NB201Supernet",
    cost="raynas.cost.nb201:nb201_costs",
    bn_tables="raynas.estimate.bn_indicator:nb201_tables",
    bn_walker="raynas.estimate.bn_indicator:nb201_op_scores",
    latency="raynas.estimate.latency:NB201_LATENCY",
    proxy_space="raynas.bpe.space:nb201_proxy_definition",
    proxy_child="raynas.bpe.space:nb201_child_definition",
    default_sampling="uniform",  # single path, as BN-NAS; the measurement is in raynas.search.recipes.default_sampling
    default_estimator="fuse:jacov+synflow+flops",  # the measurement is in raynas.search.recipes.default_estimator
))
