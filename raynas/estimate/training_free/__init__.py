"""Training-free estimators: one score per child from one seeded minibatch, or from a table.

Each estimator is a plug-in registered once (``register_estimator``), as families are:

    naswot     Mellor et al., ICML 2021         activation-pattern kernel
    jacov      Mellor et al., 2020              input-Jacobian correlation
    synflow    Tanaka et al., NeurIPS 2020      synaptic flow, no data
    snip       Lee et al., ICLR 2019            connection sensitivity
    grad_norm  Abdelfattah et al., ICLR 2021    loss-gradient norm
    zico       Li et al., ICLR 2023             inverse coefficient of variation of gradients
    params, flops                               the analytic cost model
    bn_score   Chen et al., ICCV 2021           the BN-NAS indicator

Higher always predicts better. ``score_children`` runs any of them over a list of children.
``LearnedRanker`` combines scores with the architecture's one-hot encoding (boosted trees fitted
on reference cells, saved as JSON); ``cross_validate`` and ``holdout`` judge it.
"""

from raynas.estimate.training_free._registry import Estimator, estimator, known_estimators, register_estimator
from raynas.estimate.training_free.metrics import ranking_metrics
from raynas.estimate.training_free.probe import DEFAULT_PROBE_IMAGES, Minibatch, ProbeBatch, ScoringContext
from raynas.estimate.training_free.ranker import (
    LearnedRanker,
    arch_feature_names,
    arch_features,
    cross_validate,
    holdout,
)
from raynas.estimate.training_free.scoring import BUILD, Scores, score_children

__all__ = [
    "BUILD", "DEFAULT_PROBE_IMAGES", "Estimator", "LearnedRanker", "Minibatch", "ProbeBatch", "Scores",
    "ScoringContext", "arch_feature_names", "arch_features", "cross_validate", "estimator", "holdout",
    "known_estimators", "ranking_metrics", "register_estimator", "score_children",
]
