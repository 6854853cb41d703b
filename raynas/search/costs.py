"""Cheap objectives for a batch of children: analytic FLOPs and params, table latency."""

from __future__ import annotations

from typing import Any

import numpy as np

from raynas.cost import CostModel
from raynas.space import Arch, SearchSpace


class CheapObjectives:
    """flops, params and (when a latency table is given) latency_ms, vectorised over a batch."""

    def __init__(self, space: SearchSpace, num_classes: int, in_channels: int, latency_table: Any = None) -> None:
        self.space = space
        self.cost = CostModel(space, num_classes, in_channels)
        self.latency_table = latency_table

    def __call__(self, archs: list[Arch]) -> dict[str, np.ndarray]:
        matrix = self.space.index_matrix(archs)
        values = self.cost.costs(matrix)
        if self.latency_table is not None:
            values["latency_ms"] = np.asarray(self.latency_table.predict(self.space, archs), dtype=float)
        return values
