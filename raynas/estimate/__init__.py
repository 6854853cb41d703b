"""Estimators that score children of a trained supernet: the BN-NAS indicator (a table lookup).

Estimators follow scikit-learn's conventions: constructor arguments are stored unchanged,
``fit`` does the work, and fitted state ends in ``_``.
"""

from raynas.estimate.bn_indicator import (
    DEPTH_RULES,
    MEASURES,
    BNIndicator,
    IndicatorSettings,
    NotFittedError,
    OpTable,
    score_direct,
)

__all__ = ["DEPTH_RULES", "MEASURES", "BNIndicator", "IndicatorSettings", "NotFittedError", "OpTable", "score_direct"]

from raynas.estimate.latency import (
    LatencyTable,
    MissingLatencyEntryError,
    cached_latency_table,
    child_signatures,
    device_key,
    flops_stratified_sample,
    measure_children_ms,
    measure_end_to_end,
    measure_latency_table,
    num_threads,
)

__all__ += [
    "LatencyTable", "MissingLatencyEntryError", "cached_latency_table", "child_signatures", "device_key",
    "flops_stratified_sample", "measure_children_ms", "measure_end_to_end", "measure_latency_table", "num_threads",
]
