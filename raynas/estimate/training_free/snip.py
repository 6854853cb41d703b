"""SNIP: the connection sensitivity of every weight, summed.

Follows Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR
2019, as a whole-network score (Abdelfattah et al., "Zero-Cost Proxies", ICLR 2021):
sum over conv and linear weights of |dL/dw * w| for the cross-entropy L of the minibatch.
"""

from __future__ import annotations

from torch import nn

from raynas.estimate.training_free._layers import loss_backward, weight_grads
from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import Minibatch


def snip(net: nn.Module, batch: Minibatch) -> float:
    loss_backward(net, batch)
    return float(sum((w * g).abs().sum().item() for w, g in weight_grads(net)))


register_estimator(Estimator("snip", "network", snip, "Lee et al., ICLR 2019"))
