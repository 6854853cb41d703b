"""Columns of dimension values drawn from an index matrix, for vectorised cost formulas."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from raynas.space import SearchSpace

ColumnFn = Callable[[str], np.ndarray]


def value_columns(space: SearchSpace, index_matrix: np.ndarray) -> ColumnFn:
    """``column(name)`` -> int64 values of that dimension per row, 0 where it is inactive."""
    position = {d.name: i for i, d in enumerate(space.dims)}
    tables = {
        d.name: np.asarray([*d.choices, 0], dtype=np.int64) if d.kind != "op" else None for d in space.dims
    }

    def column(name: str) -> np.ndarray:
        table = tables[name]
        if table is None:
            raise TypeError(f"dimension {name!r} is categorical; use its index column")
        return table[index_matrix[:, position[name]]]

    return column
