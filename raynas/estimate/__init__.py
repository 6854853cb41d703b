"""Estimators that score children of a trained supernet: the BN-NAS indicator (a table lookup).

Estimators follow scikit-learn's conventions: constructor arguments are stored unchanged,
``fit`` does the work, and fitted state ends in ``_``.
"""

from raynas.estimate.bn_indicator import (
    DEPTH_RULES,
    MEASURES,
    BNIndicator,
    NotFittedError,
    OpTable,
    score_direct,
)

__all__ = ["DEPTH_RULES", "MEASURES", "BNIndicator", "NotFittedError", "OpTable", "score_direct"]
