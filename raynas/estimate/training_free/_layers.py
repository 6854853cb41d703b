"""Helpers the gradient-based estimators share: which layers count, and a loss backward."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from raynas.estimate.training_free.probe import Minibatch

WEIGHTED_LAYERS = (nn.Conv2d, nn.Linear)
"""The layers the zero-cost papers score: convolutions and fully connected layers."""


def weighted_layers(net: nn.Module) -> Iterator[nn.Conv2d | nn.Linear]:
    for module in net.modules():
        if isinstance(module, WEIGHTED_LAYERS):
            yield module


def loss_backward(net: nn.Module, batch: Minibatch) -> None:
    """Cross-entropy of ``net`` on ``batch`` (train mode), gradients left in ``.grad``."""
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(batch.inputs), batch.labels).backward()


def weight_grads(net: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, grad) of every scored layer whose weight received a gradient."""
    return [(m.weight.detach(), m.weight.grad.detach()) for m in weighted_layers(net) if m.weight.grad is not None]
