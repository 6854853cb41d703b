"""Analytic MACs and params of NAS-Bench-201 children, vectorised over architectures."""

from __future__ import annotations

import numpy as np

from raynas.space import SearchSpace
from raynas.space.families.nb201 import NB201Spec


def _op_cost(op: str, c: int, size: int) -> tuple[int, int]:
    """(MACs, params) of one op on ``c`` channels at ``size`` x ``size``."""
    kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}.get(op)
    if kernel is None:
        return 0, 0
    return c * c * kernel**2 * size**2, c * c * kernel**2 + 2 * c


def nb201_costs(
    space: SearchSpace, index_matrix: np.ndarray, num_classes: int, in_channels: int
) -> tuple[np.ndarray, np.ndarray]:
    spec: NB201Spec = space.spec  # type: ignore[assignment]
    c, size, n_cells = spec.channels, spec.input_resolution, spec.cells_per_stage
    fixed_macs = in_channels * c * 9 * size**2
    fixed_params = in_channels * c * 9 + 2 * c
    per_op_macs = np.zeros(len(spec.ops), dtype=np.int64)
    per_op_params = np.zeros(len(spec.ops), dtype=np.int64)
    for stage in range(3):
        width = c * 2**stage
        if stage > 0:
            size = (size - 1) // 2 + 1
            prev = width // 2
            fixed_macs += (prev * width * 9 + width * width * 9 + prev * width) * size**2
            fixed_params += prev * width * 9 + width * width * 9 + prev * width + 4 * width
        for k, op in enumerate(spec.ops):
            macs, params = _op_cost(op, width, size)
            per_op_macs[k] += n_cells * macs
            per_op_params[k] += n_cells * params
    fixed_macs += 4 * c * num_classes
    fixed_params += 2 * 4 * c + 4 * c * num_classes + num_classes
    macs = fixed_macs + per_op_macs[index_matrix].sum(axis=1)
    params = fixed_params + per_op_params[index_matrix].sum(axis=1)
    return macs, params
