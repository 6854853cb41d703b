"""The BN-NAS indicator: mean |gamma| of each op's last BN, combined over the child's ops.

Follows Chen et al., "BN-NAS: Neural Architecture Search with Batch Normalization", ICCV 2021
(Eq. 4). A table lookup on the context's supernet: a checkpoint's trained gammas, or all ones at
initialisation, where it counts the ops that own a BN.
"""

from __future__ import annotations

import numpy as np

from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import ScoringContext


def bn_score(context: ScoringContext, matrix: np.ndarray) -> np.ndarray:
    return context.bn_indicator.score(matrix)


register_estimator(Estimator("bn_score", "table", bn_score, "Chen et al., ICCV 2021", needs_data=False))
