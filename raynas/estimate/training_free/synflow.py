"""SynFlow: the synaptic saliency of every weight under an all-ones input, with |weights|.

Follows Tanaka et al., "Pruning neural networks without any data by iteratively conserving
synaptic flow", NeurIPS 2020 (Eq. 2), as a whole-network score (Abdelfattah et al., ICLR 2021):
every parameter is replaced by its absolute value, BatchNorm is removed, a single all-ones input
goes through in float64, R = sum of the outputs, and the score is sum over conv and linear
weights of |dR/dw * w|. It reads no image.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from raynas.estimate.training_free._layers import weight_grads
from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import Minibatch


def without_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every BatchNorm replaced by the identity."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, sub in module.named_children():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
    return net


def synflow(net: nn.Module, batch: Minibatch) -> float:
    net = without_batchnorm(net).double().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.abs_()
    ones = torch.ones((1, *batch.inputs.shape[1:]), dtype=torch.float64)
    net.zero_grad(set_to_none=True)
    net(ones).sum().backward()
    return float(sum((w * g).abs().sum().item() for w, g in weight_grads(net)))


register_estimator(Estimator("synflow", "network", synflow, "Tanaka et al., NeurIPS 2020", needs_data=False))
