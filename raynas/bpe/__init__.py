"""Budgeted performance estimation (BPE) with minimum importance pruning (MIP).

Zheng et al., "Rethinking Performance Estimation in Neural Architecture Search", CVPR 2020:
search the cheap proxy (epochs, batch size, resolution, width, data fraction, ...) whose
ranking of a reference set of architectures agrees best with their true ranking, and prune the
least important proxy hyper-parameter after every round.

    bpe = load_bpe_space("search_spaces/bpe/tiny_bpe.yaml")
    reference = make_reference(bpe.target_space, bpe.reference_arch_list(), "digits", TrainConfig(epochs=2))
    result = run_bpe(bpe, reference, "runs/bpe")
    result.setting, result.tau, result.cost_seconds
"""

from raynas.bpe.evaluate import BPETrial, ProxyTask, evaluate_setting, rank_correlation, trial_config
from raynas.bpe.mip import (
    TRIAL_SCHEMA,
    BPEResult,
    PruneDecision,
    RoundSummary,
    prune_decision,
    read_trials,
    run_bpe,
    trial_objectives,
)
from raynas.bpe.proxy import (
    PROXY_FILE,
    PROXY_SCHEMA,
    load_reference_column,
    proxy_child_space,
    proxy_evaluate,
    rank_against,
    read_proxy_rows,
)
from raynas.bpe.proxy_setting import ProxySetting, from_bpe_result, load_proxy_setting
from raynas.bpe.reference import Reference, load_reference, make_reference
from raynas.bpe.space import (
    DEFAULTS,
    HYPERPARAMETERS,
    NATIVE,
    BPESpace,
    MIPConfig,
    load_bpe_space,
    proxy_arch,
    proxy_space,
    sample_reference_archs,
    scale_width,
)

__all__ = [
    "BPEResult", "BPESpace", "BPETrial", "DEFAULTS", "HYPERPARAMETERS", "MIPConfig", "NATIVE", "PROXY_FILE",
    "PROXY_SCHEMA", "ProxySetting", "ProxyTask", "PruneDecision", "Reference", "RoundSummary", "TRIAL_SCHEMA",
    "evaluate_setting", "from_bpe_result", "load_bpe_space", "load_proxy_setting", "load_reference",
    "load_reference_column", "make_reference", "proxy_arch", "proxy_child_space", "proxy_evaluate", "proxy_space",
    "prune_decision", "rank_against", "rank_correlation", "read_proxy_rows", "read_trials", "run_bpe",
    "sample_reference_archs", "scale_width", "trial_config", "trial_objectives",
]
