"""Training-speed estimation: TSE and TSE-E (Ru et al., "Speedy Performance Estimation for Neural
Architecture Search", NeurIPS 2021).

The sum of a child's minibatch training losses over its whole training (TSE), or over its last
E epochs only (TSE-E, here E = 1): the paper finds it ranks architectures better than their
validation accuracy after the same short training, at no extra cost (the losses are computed
anyway). A lower sum predicts a better architecture. Plain Python, so the CLI names the scores
without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from raynas.errors import ConfigError

RANK_BY = ("accuracy", "tse", "tse_e")
"""What a standalone proxy ranks architectures by: final val top-1, TSE or TSE-E (E = 1)."""
LOWER_IS_BETTER = frozenset({"tse", "tse_e"})
"""Scores negated when ranking, so that higher is better for every one of ``RANK_BY``."""


def training_speed(epoch_loss_sums: Sequence[float]) -> dict[str, float]:
    """``tse`` (every minibatch loss, summed) and ``tse_e`` (those of the last epoch) from the
    per-epoch sums of minibatch losses (one or more epochs: ``TrainConfig`` checks it)."""
    return {"tse": float(sum(epoch_loss_sums)), "tse_e": float(epoch_loss_sums[-1])}


def check_rank_by(value: object) -> str:
    """``value`` if it is one of ``RANK_BY``; a file's reader prefixes where it came from."""
    if value not in RANK_BY:
        raise ConfigError(f"rank_by must be one of {list(RANK_BY)}, got {value!r}")
    return str(value)
