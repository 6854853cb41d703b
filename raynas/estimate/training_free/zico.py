"""ZiCo: how large and how consistent each layer's gradients are across minibatches.

Follows Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients",
ICLR 2023 (Eq. 9). The probe minibatch is split into ``SPLITS`` equal parts; for every conv and
linear layer, with mean |g| and std g taken per weight over the parts, the layer adds
log(sum over weights with std > 0 of mean|g| / std g), and the score is the sum over layers.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn

from raynas.estimate.training_free._layers import loss_backward, weighted_layers
from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import Minibatch

SPLITS = 2


def layer_gradients(net: nn.Module, batch: Minibatch, splits: int = SPLITS) -> list[torch.Tensor]:
    """Per layer, the gradients of each part stacked: (splits, weights)."""
    grads: dict[int, list[torch.Tensor]] = defaultdict(list)
    for inputs, labels in zip(batch.inputs.chunk(splits), batch.labels.chunk(splits)):
        loss_backward(net, Minibatch(inputs, labels, batch.num_classes))
        for index, layer in enumerate(weighted_layers(net)):
            if layer.weight.grad is not None:
                grads[index].append(layer.weight.grad.detach().flatten().to(torch.float64))
    return [torch.stack(parts) for parts in grads.values() if len(parts) == splits]


def zico_score(per_layer: list[torch.Tensor]) -> float:
    total = 0.0
    for grads in per_layer:
        std = grads.std(dim=0, unbiased=False)
        kept = std > 0
        ratio = float((grads.abs().mean(dim=0)[kept] / std[kept]).sum())
        if ratio != 0:
            total += math.log(ratio)
    return total


def zico(net: nn.Module, batch: Minibatch) -> float:
    return zico_score(layer_gradients(net, batch))


register_estimator(Estimator("zico", "network", zico, "Li et al., ICLR 2023"))
