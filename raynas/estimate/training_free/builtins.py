"""The shipped estimators: importing this module registers each of them."""

from raynas.estimate.training_free import (  # noqa: F401
    bn_score,
    cost,
    grad_norm,
    jacov,
    naswot,
    snip,
    synflow,
    zico,
)
