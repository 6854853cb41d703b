"""The cost terms: #params and FLOPs (multiply-accumulates) from the space's analytic cost model.

Size alone ranks NAS-Bench-201 at Spearman ~0.75; the fusions pair it with signals that see
what size cannot (Abdelfattah et al., ICLR 2021; AZ-NAS, Lee & Ham, CVPR 2024).
"""

from __future__ import annotations

import numpy as np

from raynas.estimate.training_free._registry import Estimator, register_estimator
from raynas.estimate.training_free.probe import ScoringContext


def params(context: ScoringContext, matrix: np.ndarray) -> np.ndarray:
    return context.costs.costs(matrix)["params"].astype(np.float64)


def flops(context: ScoringContext, matrix: np.ndarray) -> np.ndarray:
    return context.costs.costs(matrix)["flops"].astype(np.float64)


register_estimator(Estimator("params", "table", params, "the analytic cost model", needs_data=False))
register_estimator(Estimator("flops", "table", flops, "the analytic cost model (MACs)", needs_data=False))
