"""jacov: how uncorrelated the input Jacobians of a minibatch are.

Follows Mellor et al., "Neural Architecture Search without Training", arXiv v1 (2020), Sec. 3.

J_i = d(sum of the logits)/d(input i); with Sigma the correlation matrix of the J_i and
lambda its eigenvalues, the score is -sum(log(lambda + k) + 1 / (lambda + k)), k = 1e-5. A
network whose Jacobians cannot be correlated (zero for some input) scores -inf.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import Minibatch

K = 1e-5


def input_jacobians(net: nn.Module, batch: Minibatch) -> np.ndarray:
    """One row per input: the gradient of the summed logits with respect to that input."""
    inputs = batch.inputs.clone().requires_grad_(True)
    net.zero_grad(set_to_none=True)
    net(inputs).sum().backward()
    assert inputs.grad is not None
    return inputs.grad.detach().flatten(1).to(torch.float64).numpy()


def jacobian_score(jacobians: np.ndarray) -> float:
    if np.any(jacobians.std(axis=1) == 0):
        return float("-inf")
    eigenvalues = np.clip(np.linalg.eigvalsh(np.corrcoef(jacobians)), 0.0, None)
    return float(-np.sum(np.log(eigenvalues + K) + 1.0 / (eigenvalues + K)))


def jacov(net: nn.Module, batch: Minibatch) -> float:
    return jacobian_score(input_jacobians(net, batch))


register_estimator(Estimator("jacov", "network", jacov, "Mellor et al., arXiv:2006.04647v1, 2020"))
