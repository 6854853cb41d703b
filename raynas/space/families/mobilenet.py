"""The elastic MobileNet family (BigNAS / once-for-all style inverted-residual stages).

Dimension names, used everywhere (space file, Optuna, Parquet, exported configs)::

    resolution, stem_width,
    s{i}_width, s{i}_depth, s{i}_b{j}_kernel, s{i}_b{j}_expand,   (stage i, block j)
    head_width

Block dimensions are conditional: ``s{i}_b{j}_*`` exists only while ``s{i}_depth > j``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from raynas.errors import ArchError
from raynas.space._family import Family, register_family
from raynas.space.arch import Arch
from raynas.space.dimension import Choice, Dimension
from raynas.space.reader import Node

ACTIVATIONS = ("relu", "hswish")
FAMILY_KEYS = ("resolution", "stem", "stages", "head", "dropout", "stage_skip")


@dataclass(frozen=True)
class StemSpec:
    width: tuple[int, ...]
    stride: int
    act: str


@dataclass(frozen=True)
class StageSpec:
    width: tuple[int, ...]
    depth: tuple[int, ...]
    kernel: tuple[int, ...]
    expand: tuple[int, ...]
    stride: int
    se: bool
    act: str

    @property
    def max_depth(self) -> int:
        return self.depth[-1]


@dataclass(frozen=True)
class HeadSpec:
    width: tuple[int, ...]
    mix_width: int | None
    act: str


@dataclass(frozen=True)
class MobileNetSpec:
    """Parsed ``family: mobilenet`` space file."""

    resolutions: tuple[int, ...]
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    dropout: float
    stage_skip: bool = False
    """BigNAS's skip connection at stage transitions: the first block of every stage gets a
    shortcut (2x2 average pooling where it strides, a 1x1 conv where channels differ)."""

    @classmethod
    def parse(cls, root: Node) -> "MobileNetSpec":
        stem = root.child("stem").mapping(["width"], ["stride", "act"])
        head = root.child("head").mapping(["width"], ["mix_width", "act"])
        stages = root.child("stages")
        if not isinstance(stages.value, list) or not stages.value:
            raise stages.error("must be a non-empty list of stages")
        mix = head.get("mix_width")
        return cls(
            resolutions=root.child("resolution").choices(minimum=4),
            stem=StemSpec(
                width=stem.child("width").choices(),
                stride=stem.get("stride", 1).one_of([1, 2]),
                act=stem.get("act", "relu").one_of(ACTIVATIONS),
            ),
            stages=tuple(_parse_stage(stages.child(i)) for i in range(len(stages.value))),
            head=HeadSpec(
                width=head.child("width").choices(),
                mix_width=None if mix.value is None else mix.integer(minimum=1),
                act=head.get("act", "relu").one_of(ACTIVATIONS),
            ),
            dropout=root.get("dropout", 0.0).number(0.0, 0.99),
            stage_skip=root.get("stage_skip", False).boolean(),
        )

    # --- dimensions ---------------------------------------------------------------------
    def dimensions(self) -> tuple[Dimension, ...]:
        dims = [
            Dimension("resolution", self.resolutions, "resolution"),
            Dimension("stem_width", self.stem.width, "width"),
        ]
        for i, stage in enumerate(self.stages):
            dims.append(Dimension(f"s{i}_width", stage.width, "width"))
            dims.append(Dimension(f"s{i}_depth", stage.depth, "depth"))
            for j in range(stage.max_depth):
                parent = f"s{i}_depth"
                dims.append(Dimension(f"s{i}_b{j}_kernel", stage.kernel, "kernel", parent, j))
                dims.append(Dimension(f"s{i}_b{j}_expand", stage.expand, "expand", parent, j))
        dims.append(Dimension("head_width", self.head.width, "width"))
        return tuple(dims)

    def resolution(self, arch: Arch) -> int:
        return int(arch["resolution"])

    # --- canonical key: r32-s16-w16d2:k3e1,k3e1-w24d1:k5e4-h64 --------------------------
    def format_key(self, arch: Arch) -> str:
        parts = [f"r{arch['resolution']}", f"s{arch['stem_width']}"]
        for i in range(len(self.stages)):
            depth = int(arch[f"s{i}_depth"])
            blocks = ",".join(f"k{arch[f's{i}_b{j}_kernel']}e{arch[f's{i}_b{j}_expand']}" for j in range(depth))
            parts.append(f"w{arch[f's{i}_width']}d{depth}:{blocks}")
        parts.append(f"h{arch['head_width']}")
        return "-".join(parts)

    def parse_key(self, key: str) -> dict[str, Choice]:
        parts = key.strip().split("-")
        if len(parts) != len(self.stages) + 3:
            raise ArchError(
                f"key {key!r} has {len(parts)} '-'-separated parts; this space needs "
                f"{len(self.stages) + 3} (r<res>-s<stem>-<stage>...-h<head>), e.g. r32-s16-w16d1:k3e1-h64"
            )
        values: dict[str, Choice] = {
            "resolution": _int_after(parts[0], "r", key),
            "stem_width": _int_after(parts[1], "s", key),
            "head_width": _int_after(parts[-1], "h", key),
        }
        for i, part in enumerate(parts[2:-1]):
            match = re.fullmatch(r"w(\d+)d(\d+):((?:k\d+e\d+,?)*)", part)
            if match is None:
                raise ArchError(f"stage {i} of key {key!r} must look like w24d2:k3e4,k5e6, got {part!r}")
            values[f"s{i}_width"] = int(match.group(1))
            values[f"s{i}_depth"] = int(match.group(2))
            blocks = re.findall(r"k(\d+)e(\d+)", match.group(3))
            if len(blocks) != int(match.group(2)):
                raise ArchError(f"stage {i} of key {key!r} has depth {match.group(2)} but {len(blocks)} blocks")
            for j, (k, e) in enumerate(blocks):
                values[f"s{i}_b{j}_kernel"] = int(k)
                values[f"s{i}_b{j}_expand"] = int(e)
        return values


def _parse_stage(node: Node) -> StageSpec:
    node.mapping(["width", "depth", "kernel", "expand", "stride"], ["se", "act"])
    return StageSpec(
        width=node.child("width").choices(),
        depth=node.child("depth").choices(minimum=1),
        kernel=node.child("kernel").choices(odd=True),
        expand=node.child("expand").choices(),
        stride=node.child("stride").one_of([1, 2]),
        se=node.get("se", False).boolean(),
        act=node.get("act", "relu").one_of(ACTIVATIONS),
    )


def _int_after(part: str, prefix: str, key: str) -> int:
    if not part.startswith(prefix) or not part[len(prefix):].isdigit():
        raise ArchError(f"key {key!r}: expected {prefix}<integer>, got {part!r}")
    return int(part[len(prefix):])


FAMILY = register_family(Family(
    name="mobilenet",
    keys=FAMILY_KEYS,
    parse=MobileNetSpec.parse,
    supernet="raynas.supernet.mobilenet:MobileNetSupernet",
    cost="raynas.cost.mobilenet:mobilenet_costs",
    bn_tables="raynas.estimate.bn_indicator:mobilenet_tables",
    bn_walker="raynas.estimate.bn_indicator:mobilenet_op_scores",
    latency="raynas.estimate.latency:MOBILENET_LATENCY",
    proxy_space="raynas.bpe.space:mobilenet_proxy_definition",
    default_sampling="sandwich",  # BigNAS's rule; the measurement is in raynas.search.recipes.default_sampling
))
