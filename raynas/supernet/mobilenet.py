"""Elastic MobileNet supernet (BigNAS / once-for-all): elastic resolution, width, depth,
kernel and expand ratio, with optional squeeze-excite.

BN layout is a constructor choice (see ``BN_LAYOUTS``): "shared" is BigNAS's top-n BN, the
"private*" layouts give every block BN one slot per (kernel, expand) choice, so that choices
which share conv weights still own distinct BN parameters. "private_resolution" adds the input
resolution to the slot key (one BN set per resolution, as BigNAS calibrates per resolution), so
that a data-free gamma indicator can tell resolutions apart too.

A space with ``stage_skip: true`` adds BigNAS's skip connection at every stage transition
(``StageShortcut``: average pooling and/or a BN-free 1x1 conv); ``with_stage_skip`` turns it on
for a space that lacks the key. It is off by default, so BN-only supernets, their indicator
tables and existing checkpoints and exports are unchanged.
"""

from __future__ import annotations

import itertools
from typing import cast

import torch
from torch import nn

from raynas.errors import ConfigError
from raynas.space import Arch, SearchSpace, space_from_dict
from raynas.space.families.mobilenet import MobileNetSpec, StageSpec
from raynas.supernet.base import Supernet
from raynas.supernet.blocks import (
    ClassifierHead, ConvBNAct, InvertedResidual, SqueezeExcite, StageShortcut, se_channels,
)
from raynas.supernet.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear

BN_LAYOUTS: dict[str, tuple[str, ...]] = {
    "shared": (),
    "private_kernel": ("kernel",),
    "private_expand": ("expand",),
    "private": ("kernel", "expand"),
    "private_resolution": ("kernel", "expand", "resolution"),
}
SLOT_AXES = ("kernel", "expand", "resolution")


class _BlockSlots:
    """Maps a block's (kernel, expand, resolution) choice to its BN slot under a layout."""

    def __init__(self, stage: StageSpec, resolutions: tuple[int, ...], private: tuple[str, ...]) -> None:
        choices = {"kernel": stage.kernel, "expand": stage.expand, "resolution": resolutions}
        axes = [choices[a] if a in private else (None,) for a in SLOT_AXES]
        self.index = {combo: i for i, combo in enumerate(itertools.product(*axes))}
        self.private = private

    @property
    def count(self) -> int:
        return len(self.index)

    def slot(self, kernel: int, expand: int, resolution: int) -> int:
        values = (kernel, expand, resolution)
        return self.index[tuple(v if a in self.private else None for a, v in zip(SLOT_AXES, values))]


class MobileNetSupernet(Supernet):
    """BigNAS-style elastic MobileNet. Children are chosen by an ``Arch`` of its space."""

    def __init__(self, space: SearchSpace, num_classes: int, in_channels: int = 3, bn_layout: str = "private") -> None:
        super().__init__(space, num_classes, in_channels)
        if bn_layout not in BN_LAYOUTS:
            raise ConfigError(f"unknown bn_layout {bn_layout!r}; valid layouts: {sorted(BN_LAYOUTS)}")
        spec = cast(MobileNetSpec, space.spec)
        self.spec = spec
        self.bn_layout = bn_layout
        stem_max = spec.stem.width[-1]
        self.stem = ConvBNAct(
            ElasticConv2d(in_channels, stem_max, 3, spec.stem.stride), ElasticBatchNorm2d(stem_max), spec.stem.act
        )
        self.slots = [_BlockSlots(stage, spec.resolutions, BN_LAYOUTS[bn_layout]) for stage in spec.stages]
        self.stages = nn.ModuleList()
        width_in, widths_in = stem_max, spec.stem.width
        for stage, slots in zip(spec.stages, self.slots):
            blocks = nn.ModuleList()
            for j in range(stage.max_depth):
                shortcut = _elastic_shortcut(stage, widths_in) if spec.stage_skip and j == 0 else None
                max_in = width_in if j == 0 else stage.width[-1]
                blocks.append(self._elastic_block(stage, max_in, j, slots.count, shortcut))
            self.stages.append(blocks)
            width_in, widths_in = stage.width[-1], stage.width
        head_max = spec.head.width[-1]
        mix = None if spec.head.mix_width is None else ElasticLinear(head_max, spec.head.mix_width, bias=False)
        features = spec.head.mix_width or head_max
        self.head = ClassifierHead(
            ConvBNAct(ElasticConv2d(width_in, head_max, 1), ElasticBatchNorm2d(head_max), spec.head.act),
            mix, spec.head.act, spec.dropout, ElasticLinear(features, num_classes),
        )

    @staticmethod
    def _elastic_block(
        stage: StageSpec, max_in: int, index: int, slots: int, shortcut: StageShortcut | None = None
    ) -> InvertedResidual:
        stride = stage.stride if index == 0 else 1
        max_mid = max_in * stage.expand[-1]
        max_out = stage.width[-1]
        expand = None
        if stage.expand[-1] > 1:
            expand = ConvBNAct(ElasticConv2d(max_in, max_mid, 1), ElasticBatchNorm2d(max_mid, slots), stage.act)
        depthwise = ConvBNAct(
            ElasticConv2d(max_mid, max_mid, stage.kernel[-1], stride, depthwise=True),
            ElasticBatchNorm2d(max_mid, slots), stage.act,
        )
        se = None
        if stage.se:
            reduced = se_channels(max_mid)
            se = SqueezeExcite(ElasticConv2d(max_mid, reduced, 1, bias=True), ElasticConv2d(reduced, max_mid, 1, bias=True))
        project = ConvBNAct(ElasticConv2d(max_mid, max_out, 1), ElasticBatchNorm2d(max_out, slots), "none")
        return InvertedResidual(expand, depthwise, se, project, stride, shortcut)

    def stage_blocks(self) -> list[list[InvertedResidual]]:
        """The blocks of every stage, typed: ``self.stages`` holds them as plain modules."""
        return [[cast(InvertedResidual, b) for b in cast(nn.ModuleList, blocks)] for blocks in self.stages]

    # --- activation ---------------------------------------------------------------------
    def _apply_arch(self, arch: Arch) -> None:
        _conv(self.stem.conv).set_active(out_channels=int(arch["stem_width"]))
        width_in = int(arch["stem_width"])
        for i, (blocks, slots) in enumerate(zip(self.stage_blocks(), self.slots)):
            width = int(arch[f"s{i}_width"])
            for j in range(int(arch[f"s{i}_depth"])):
                kernel, expand = int(arch[f"s{i}_b{j}_kernel"]), int(arch[f"s{i}_b{j}_expand"])
                slot = slots.slot(kernel, expand, int(arch["resolution"]))
                _activate_block(blocks[j], width_in, width, kernel, expand, slot)
                width_in = width
        _conv(self.head.conv.conv).set_active(out_channels=int(arch["head_width"]))

    def _reset_arch(self) -> None:
        for module in self.modules():
            if isinstance(module, (ElasticConv2d, ElasticBatchNorm2d)):
                module.reset_active()

    def _forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        x = self.stem(x)
        for i, blocks in enumerate(self.stages):
            for block in cast(nn.ModuleList, blocks)[: int(arch[f"s{i}_depth"])]:
                x = block(x)
        return self.head(x)

    # --- export -------------------------------------------------------------------------
    def _export(self, arch: Arch) -> nn.Module:
        width = int(arch["stem_width"])
        stem = _export_conv_bn(self.stem, self.in_channels)
        blocks: list[nn.Module] = []
        for i, stage in enumerate(self.stage_blocks()):
            for block in stage[: int(arch[f"s{i}_depth"])]:
                blocks.append(_export_block(block, width))
                width = int(arch[f"s{i}_width"])
        head_width = int(arch["head_width"])
        mix = None if self.head.mix is None else _linear(self.head.mix).export(head_width)
        features = head_width if mix is None else mix.out_features
        head = ClassifierHead(
            _export_conv_bn(self.head.conv, width), mix, self.spec.head.act, self.head.dropout.p,
            _linear(self.head.classifier).export(features),
        )
        return MobileNetChild(stem, nn.Sequential(*blocks), head)


class MobileNetChild(nn.Module):
    """A static child exported from ``MobileNetSupernet``: plain conv, BN and linear layers."""

    def __init__(self, stem: ConvBNAct, blocks: nn.Sequential, head: ClassifierHead) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _activate_block(block: InvertedResidual, width_in: int, width: int, kernel: int, expand: int, slot: int) -> None:
    mid = width_in * expand if block.expand is not None else width_in
    if block.expand is not None:
        _conv(block.expand.conv).set_active(out_channels=mid)
        _bn(block.expand.bn).set_active(slot=slot)
    _conv(block.depthwise.conv).set_active(out_channels=mid, kernel_size=kernel)
    _bn(block.depthwise.bn).set_active(slot=slot)
    if block.se is not None:
        _conv(block.se.reduce).set_active(out_channels=se_channels(mid))
        _conv(block.se.expand).set_active(out_channels=mid)
    _conv(block.project.conv).set_active(out_channels=width)
    _bn(block.project.bn).set_active(slot=slot)
    if block.shortcut is not None and block.shortcut.conv is not None:
        _conv(block.shortcut.conv).set_active(out_channels=width)


# The supernet builds its ``ConvBNAct``, ``SqueezeExcite``, ``StageShortcut`` and
# ``ClassifierHead`` parts from elastic modules, but blocks.py types those parts as plain
# ``nn.Module``s (an exported child holds plain ``nn`` layers there); these name the elastic type.
def _conv(module: nn.Module | None) -> ElasticConv2d:
    return cast(ElasticConv2d, module)


def _bn(module: nn.Module) -> ElasticBatchNorm2d:
    return cast(ElasticBatchNorm2d, module)


def _linear(module: nn.Module) -> ElasticLinear:
    return cast(ElasticLinear, module)


def _elastic_shortcut(stage: StageSpec, widths_in: tuple[int, ...]) -> StageShortcut:
    """A stage's first-block shortcut; it owns a 1x1 conv only if some child changes channels.

    The conv starts as the identity on the channels it keeps (output c copies input c; extra
    output channels start at zero), so with the residual gammas at zero a BigNAS supernet
    starts as an identity mapping through every stage, as the paper intends.
    """
    same_width = len(widths_in) == 1 and widths_in == stage.width
    if same_width:
        return StageShortcut(stage.stride, None)
    conv = ElasticConv2d(widths_in[-1], stage.width[-1], 1)
    with torch.no_grad():
        conv.weight.zero_()
        kept = min(conv.weight.shape[:2])
        conv.weight[torch.arange(kept), torch.arange(kept)] = 1.0
    return StageShortcut(stage.stride, conv)


def with_stage_skip(space: SearchSpace, enabled: bool = True) -> SearchSpace:
    """``space`` with ``stage_skip`` set: BigNAS's skip connection at every stage transition.

    The key goes into the space definition, which checkpoints and exported ``arch.json`` files
    embed, so every later build of the supernet or a child (evaluator actors, ``load_child``)
    has the same shortcuts.
    """
    if not isinstance(space.spec, MobileNetSpec):
        raise ConfigError(f"stage_skip applies to the mobilenet family only, got family {space.family!r}")
    if not space.definition:
        raise ConfigError(f"space {space.name!r} has no definition to add stage_skip to; load it with load_space")
    return space_from_dict({**space.definition, "stage_skip": enabled}, source=space.source, default_name=space.name)


def _export_conv_bn(layer: ConvBNAct, in_channels: int) -> ConvBNAct:
    conv = _conv(layer.conv).export(in_channels)
    exported = ConvBNAct(conv, _bn(layer.bn).export(conv.out_channels), "none")
    exported.act = layer.act.__class__()
    return exported


def _export_block(block: InvertedResidual, width_in: int) -> InvertedResidual:
    expand = None if block.expand is None else _export_conv_bn(block.expand, width_in)
    mid = width_in if block.expand is None else _conv(block.expand.conv).out_channels
    depthwise = _export_conv_bn(block.depthwise, mid)
    se = None
    if block.se is not None:
        reduce = _conv(block.se.reduce).export(mid)
        se = SqueezeExcite(reduce, _conv(block.se.expand).export(reduce.out_channels))
    project = _export_conv_bn(block.project, mid)
    shortcut = None
    if block.shortcut is not None:
        width = _conv(block.project.conv).out_channels
        conv = _conv(block.shortcut.conv).export(width_in) if width != width_in else None
        shortcut = StageShortcut(block.shortcut.stride, conv)
    return InvertedResidual(expand, depthwise, se, project, block.stride, shortcut)
