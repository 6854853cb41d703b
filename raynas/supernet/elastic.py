"""Elastic primitives: one module per primitive, holding max-size weights sliced to the active child.

Weight sharing follows BigNAS (Yu et al., ECCV 2020): width takes the first n channels, kernel
size takes the centre crop of the largest kernel. ``ElasticBatchNorm2d`` adds "slots": private
BN parameters per choice, the elastic analogue of switchable BN (Yu et al., "Slimmable Neural
Networks", ICLR 2019), so that a BN-gamma indicator can tell choices apart.

Each module has an active setting, set by the supernet inside a scoped context, and can
``export()`` a plain ``nn`` copy of itself for that setting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ElasticConv2d(nn.Module):
    """Conv whose out-channels and kernel size are chosen per forward (centre-sliced).

    In-channels follow the input. A depthwise conv has as many groups as input channels.
    """

    def __init__(
        self, max_in: int, max_out: int, max_kernel: int, stride: int = 1, depthwise: bool = False, bias: bool = False
    ) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise = depthwise
        self.max_kernel = max_kernel
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(max_out, in_per_group, max_kernel, max_kernel))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.out_channels = max_out
        self.kernel_size = max_kernel

    def set_active(self, *, out_channels: int, kernel_size: int | None = None) -> None:
        kernel = self.max_kernel if kernel_size is None else kernel_size
        if out_channels > self.weight.shape[0] or kernel > self.max_kernel or kernel % 2 == 0:
            raise ValueError(
                f"active setting out={out_channels}, kernel={kernel} exceeds max out={self.weight.shape[0]}, "
                f"kernel={self.max_kernel} (kernel must be odd)"
            )
        self.out_channels = out_channels
        self.kernel_size = kernel

    def reset_active(self) -> None:
        self.out_channels = self.weight.shape[0]
        self.kernel_size = self.max_kernel

    def active_weight(self, in_channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        start = (self.max_kernel - self.kernel_size) // 2
        stop = start + self.kernel_size
        in_per_group = 1 if self.depthwise else in_channels
        weight = self.weight[: self.out_channels, :in_per_group, start:stop, start:stop]
        bias = None if self.bias is None else self.bias[: self.out_channels]
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.active_weight(x.shape[1])
        groups = x.shape[1] if self.depthwise else 1
        return F.conv2d(x, weight, bias, self.stride, self.kernel_size // 2, 1, groups)

    def export(self, in_channels: int) -> nn.Conv2d:
        weight, bias = self.active_weight(in_channels)
        groups = in_channels if self.depthwise else 1
        conv = nn.Conv2d(
            in_channels, self.out_channels, self.kernel_size, self.stride, self.kernel_size // 2,
            groups=groups, bias=bias is not None,
        )
        with torch.no_grad():
            conv.weight.copy_(weight)
            if bias is not None:
                assert conv.bias is not None  # built with bias=True just above
                conv.bias.copy_(bias)
        return conv


class ElasticBatchNorm2d(nn.Module):
    """BatchNorm over the first n channels, with one private parameter set per slot.

    ``momentum=None`` gives a cumulative average, as ``nn.BatchNorm2d`` does; BN calibration
    relies on it. Statistics and the batch counter are kept per slot.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(self, max_channels: int, slots: int = 1, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(slots, max_channels))
        self.bias = nn.Parameter(torch.zeros(slots, max_channels))
        self.register_buffer("running_mean", torch.zeros(slots, max_channels))
        self.register_buffer("running_var", torch.ones(slots, max_channels))
        self.register_buffer("num_batches_tracked", torch.zeros(slots, dtype=torch.long))
        self.slot = 0

    @property
    def slots(self) -> int:
        return self.weight.shape[0]

    def set_active(self, *, slot: int) -> None:
        if not 0 <= slot < self.slots:
            raise ValueError(f"BN slot must be in [0, {self.slots}), got {slot}")
        self.slot = slot

    def reset_active(self) -> None:
        self.slot = 0

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = x.shape[1], self.slot
        momentum = 0.0
        if self.training:
            self.num_batches_tracked[s] += 1
            momentum = 1.0 / float(self.num_batches_tracked[s]) if self.momentum is None else self.momentum
        return F.batch_norm(
            x, self.running_mean[s, :c], self.running_var[s, :c], self.weight[s, :c], self.bias[s, :c],
            self.training, momentum, self.eps,
        )

    def export(self, channels: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        # track_running_stats defaults to True, so nn.BatchNorm2d has all three buffers
        mean, var, tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
        assert mean is not None and var is not None and tracked is not None
        s = self.slot
        with torch.no_grad():
            bn.weight.copy_(self.weight[s, :channels])
            bn.bias.copy_(self.bias[s, :channels])
            mean.copy_(self.running_mean[s, :channels])
            var.copy_(self.running_var[s, :channels])
            tracked.copy_(self.num_batches_tracked[s])
        return bn


class ElasticLinear(nn.Module):
    """Linear layer whose in-features follow the input (the first n)."""

    def __init__(self, max_in: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, max_in))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        # nn.Linear's own init: a frozen (BN-only) classifier must still pass a signal through.
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias
        return F.linear(x, self.weight[:, : x.shape[1]], bias)

    def export(self, in_features: int) -> nn.Linear:
        linear = nn.Linear(in_features, self.weight.shape[0], bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.weight[:, :in_features])
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear


BATCHNORMS = (nn.BatchNorm2d, ElasticBatchNorm2d)
