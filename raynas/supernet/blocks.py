"""Building blocks shared by supernets and their exported children.

A block's forward is written once: in a supernet its layers are elastic modules with an active
setting, in an exported child they are plain ``nn`` layers. MobileNetV2/V3 inverted residuals:
Sandler et al., CVPR 2018; Howard et al., ICCV 2019 (SE and hard-swish). Stage-transition
shortcuts: Yu et al., "BigNAS", ECCV 2020, Sec. 3.1 (initialization).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def activation(name: str) -> nn.Module:
    """The activation named in a space file."""
    return {"relu": nn.ReLU, "hswish": nn.Hardswish, "none": nn.Identity}[name]()


def se_channels(mid: int) -> int:
    """Squeeze-excite bottleneck width for ``mid`` channels: a quarter, at least 8."""
    return max(8, mid // 4)


class ConvBNAct(nn.Module):
    """conv -> BN -> activation."""

    def __init__(self, conv: nn.Module, bn: nn.Module, act: str) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Channel attention: pool, reduce (ReLU), expand (hard-sigmoid), rescale."""

    def __init__(self, reduce: nn.Module, expand: nn.Module) -> None:
        super().__init__()
        self.reduce = reduce
        self.expand = expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(scale))


class StageShortcut(nn.Module):
    """BigNAS's skip connection at a stage transition, where MobileNetV2 has none.

    2x2 average pooling (stride 2, ceil mode, so it matches the strided depthwise conv's output
    size) where the block strides, then a 1x1 conv where the channel counts differ; the identity
    otherwise. The conv has no BN: it adds no BatchNorm to the network, so BN-indicator tables
    (which score a block by its last BN) are unchanged. In a supernet ``conv`` is elastic (its
    first n in- and out-channels serve a child); in an exported child it is a plain conv, or None
    when that child's widths match.
    """

    def __init__(self, stride: int, conv: nn.Module | None) -> None:
        super().__init__()
        self.stride = stride
        self.conv = conv

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True, count_include_pad=False)
        if x.shape[1] != out_channels:
            if self.conv is None:
                raise RuntimeError(f"stage shortcut has no conv to map {x.shape[1]} channels to {out_channels}")
            x = self.conv(x)
        return x


class InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise kxk -> SE -> project 1x1, plus a residual.

    The residual is ``shortcut`` where the block has one (a stage's first block in a
    ``stage_skip`` space), else the identity when shapes allow.
    """

    def __init__(
        self, expand: ConvBNAct | None, depthwise: ConvBNAct, se: SqueezeExcite | None, project: ConvBNAct, stride: int,
        shortcut: StageShortcut | None = None,
    ) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.se = se
        self.project = project
        self.stride = stride
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if self.shortcut is not None:
            y = y + self.shortcut(x, y.shape[1])
        elif self.stride == 1 and y.shape[1] == x.shape[1]:
            y = y + x
        return y


class ClassifierHead(nn.Module):
    """Last 1x1 conv, global pooling, optional feature-mix layer, dropout and classifier."""

    def __init__(self, conv: ConvBNAct, mix: nn.Module | None, act: str, dropout: float, classifier: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.mix = mix
        self.mix_act = activation(act if mix is not None else "none")
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        if self.mix is not None:
            x = self.mix_act(self.mix(x))
        return self.classifier(self.dropout(x))
