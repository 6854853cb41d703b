"""Building blocks shared by supernets and their exported children.

A block's forward is written once: in a supernet its layers are elastic modules with an active
setting, in an exported child they are plain ``nn`` layers. MobileNetV2/V3 inverted residuals:
Sandler et al., CVPR 2018; Howard et al., ICCV 2019 (SE and hard-swish).
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


class InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise kxk -> SE -> project 1x1, with a residual when shapes allow."""

    def __init__(
        self, expand: ConvBNAct | None, depthwise: ConvBNAct, se: SqueezeExcite | None, project: ConvBNAct, stride: int
    ) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.se = se
        self.project = project
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if self.stride == 1 and y.shape[1] == x.shape[1]:
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
