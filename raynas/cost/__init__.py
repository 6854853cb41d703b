"""Analytic cost model: MACs ("FLOPs" in NAS papers) and params, vectorised over architectures.

Pure numpy, so constraints on cost apply before any BN scoring or calibration, in a driver that
imports neither torch nor ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raynas.cost.columns import value_columns
from raynas.cost.mobilenet import mobilenet_costs
from raynas.cost.nb201 import nb201_costs
from raynas.errors import SpaceError
from raynas.space import Arch, SearchSpace


@dataclass(frozen=True)
class CostModel:
    """MACs and params of any child of ``space``, for a classifier of ``num_classes`` outputs."""

    space: SearchSpace
    num_classes: int = 10
    in_channels: int = 3

    def costs(self, archs: list[Arch] | np.ndarray) -> dict[str, np.ndarray]:
        """{"flops": MACs, "params": count} per architecture; accepts Archs or an index matrix."""
        matrix = archs if isinstance(archs, np.ndarray) else self.space.index_matrix(list(archs))
        if self.space.family == "mobilenet":
            macs, params = mobilenet_costs(
                self.space, value_columns(self.space, matrix), self.num_classes, self.in_channels
            )
        elif self.space.family == "nb201":
            macs, params = nb201_costs(self.space, matrix, self.num_classes, self.in_channels)
        else:
            raise SpaceError(f"no cost model for family {self.space.family!r}; known: mobilenet, nb201")
        return {"flops": np.asarray(macs, dtype=np.int64), "params": np.asarray(params, dtype=np.int64)}

    def flops(self, archs: list[Arch] | np.ndarray) -> np.ndarray:
        return self.costs(archs)["flops"]

    def params(self, archs: list[Arch] | np.ndarray) -> np.ndarray:
        return self.costs(archs)["params"]

    def of(self, arch: Arch) -> dict[str, int]:
        """Costs of one architecture as plain ints."""
        return {k: int(v[0]) for k, v in self.costs([arch]).items()}


__all__ = ["CostModel"]
