"""grad_norm: the Euclidean norm of each layer's loss gradient, summed over layers.

Follows Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021 (Sec. 3):
sum over conv and linear layers of ||dL/dW||_2 for the cross-entropy L of the minibatch.
"""

from __future__ import annotations

from torch import nn

from raynas.estimate.training_free._layers import loss_backward, weight_grads
from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import Minibatch


def grad_norm(net: nn.Module, batch: Minibatch) -> float:
    loss_backward(net, batch)
    return float(sum(g.norm().item() for _, g in weight_grads(net)))


register_estimator(Estimator("grad_norm", "network", grad_norm, "Abdelfattah et al., ICLR 2021"))
