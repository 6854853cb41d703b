"""Analytic cost model: MACs ("FLOPs" in NAS papers) and params, vectorised over architectures.

Pure numpy, so constraints on cost apply before any BN scoring or calibration, in a driver that
imports neither torch nor ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raynas.errors import SpaceError
from raynas.space import Arch, SearchSpace
from raynas.space._family import family_part


@dataclass(frozen=True)
class CostModel:
    """MACs and params of any child of ``space``, for a classifier of ``num_classes`` outputs."""

    space: SearchSpace
    num_classes: int = 10
    in_channels: int = 3

    def costs(self, archs: list[Arch] | np.ndarray) -> dict[str, np.ndarray]:
        """{"flops": MACs, "params": count} per architecture; accepts Archs or an index matrix."""
        matrix = archs if isinstance(archs, np.ndarray) else self.space.index_matrix(list(archs))
        costs_of = family_part(self.space.family, "cost", "cost model", SpaceError)
        macs, params = costs_of(self.space, matrix, self.num_classes, self.in_channels)
        return {"flops": np.asarray(macs, dtype=np.int64), "params": np.asarray(params, dtype=np.int64)}

    def flops(self, archs: list[Arch] | np.ndarray) -> np.ndarray:
        return self.costs(archs)["flops"]

    def params(self, archs: list[Arch] | np.ndarray) -> np.ndarray:
        return self.costs(archs)["params"]

    def of(self, arch: Arch) -> dict[str, int]:
        """Costs of one architecture as plain ints."""
        return {k: int(v[0]) for k, v in self.costs([arch]).items()}


__all__ = ["CostModel"]
