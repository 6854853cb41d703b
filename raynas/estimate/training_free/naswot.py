"""NASWOT: the log-determinant of the minibatch's ReLU activation-pattern kernel.

Follows Mellor et al., "Neural Architecture Search without Training", ICML 2021 (Eq. 2).

Each rectifier's input splits the minibatch into binary codes c_i (unit on or off); the kernel
K[i, j] counts the units where inputs i and j agree (N_A minus the Hamming distance), summed
over every rectifier, and the score is log|det K|. Hard-swish units count as on above zero, as
ReLU units do. A singular kernel (inputs the network cannot tell apart) scores -inf.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import Minibatch

RECTIFIERS = (nn.ReLU, nn.Hardswish)


def activation_kernel(net: nn.Module, batch: Minibatch) -> torch.Tensor:
    """K = sum over rectifiers of c c^T + (1 - c)(1 - c)^T, in float64 (exact up to 2^53 units)."""
    n = len(batch.inputs)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def accumulate(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        codes = (inputs[0].detach().flatten(1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T).add_((1 - codes) @ (1 - codes).T)

    hooks = [m.register_forward_hook(accumulate) for m in net.modules() if isinstance(m, RECTIFIERS)]
    try:
        with torch.no_grad():
            net(batch.inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return kernel


def naswot(net: nn.Module, batch: Minibatch) -> float:
    sign, logdet = np.linalg.slogdet(activation_kernel(net, batch).numpy())
    return float(logdet) if sign != 0 else float("-inf")


register_estimator(Estimator("naswot", "network", naswot, "Mellor et al., ICML 2021"))
