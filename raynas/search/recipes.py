"""Per-space defaults for how a supernet is trained and scored, taken from our own measurements.

Each default names the benchmark figure behind it (``benchmarks/RESULTS.md``, "Ranking
quality"). A flag or argument given explicitly always wins; ``None`` means "use the default".

- ``default_depth_rule``: ``"mean"`` on spaces with elastic depth, ``"sum"`` elsewhere.
- ``default_sampling``: ``"sandwich"`` for the mobilenet family, ``"uniform"`` for nb201.
- ``default_estimator``: the label-free estimator expression each family ranks best with.
- ``main_job_estimator``: what the main job's search ranks a trained BN-only supernet's children by.
"""

from __future__ import annotations

from typing import overload

from raynas.errors import ConfigError
from raynas.estimate import DEPTH_RULES
from raynas.sampling import SAMPLINGS
from raynas.space import SearchSpace, family

FALLBACK_ESTIMATOR = "fuse:jacov+synflow+flops"
"""For a family with no measurement: nb201's measured best (``default_estimator``)."""
ESTIMATOR_BEATS_BN = ("nb201",)
"""Families whose default estimator ranked better than the trained BN indicator (``main_job_estimator``)."""
FALLBACK_SAMPLING = "sandwich"
"""For a family with no measurement: BigNAS's sandwich rule, ``TrainConfig``'s own default."""


def has_elastic_depth(space: SearchSpace) -> bool:
    """True when children of ``space`` can differ in their number of blocks."""
    return any(d.kind == "depth" and len(d.choices) > 1 for d in space.dims)


def default_depth_rule(space: SearchSpace) -> str:
    """How the BN indicator combines op scores on ``space``: ``"mean"`` with elastic depth, else ``"sum"``.

    Measured on mbv3_cifar (50 children, ground truth 2,500 images x 3 epochs): the summed rule
    (BN-NAS) is mostly a block count and ranks backwards, Kendall tau -0.351 (lr 0.5) / -0.255
    (lr 2); the mean over ops ranks forwards, tau 0.201 / 0.189, a gain over #params of +0.489
    [+0.144, +0.781] / +0.478 [+0.075, +0.823] (95% bootstrap intervals above zero). Without
    elastic depth every child has the same number of ops, so both rules rank alike and the
    default stays BN-NAS's sum (on nb201 every edge is an op: mean = sum / 6).
    """
    return "mean" if has_elastic_depth(space) else "sum"


def default_estimator(space: SearchSpace) -> str:
    """The label-free estimator expression that ranked best on ``space``'s family (``Family.default_estimator``),
    else ``FALLBACK_ESTIMATOR``; the measurements are in benchmarks/RESULTS.md ("Training-free estimators").

    - nb201: ``fuse:jacov+synflow+flops``, the sum of log-ranks of the input-Jacobian correlation,
      synaptic flow and FLOPs, each at initialisation on one seeded batch of 64 CIFAR-10 images.
      Of the 35 fusions and votes of naswot, jacov, synflow, zico and flops, it ranked the 800
      search cells of the dev table best; on the 200 held-out cells it reaches Spearman 0.909
      [0.871, 0.934] (#params 0.754), on all 1,000 0.924 [0.915, 0.934] (#params 0.753, the best
      single estimator zico 0.801), at 1.14 CPU-s per cell; 3 of its top 10 are in the table's top 1%.
    - mobilenet: the fallback, the same expression. Against the short-training truth of 50
      mbv3_cifar children no estimator or fusion is resolved from another or from #params (gains
      over #params of -0.30 to +0.08 Spearman, intervals about +-0.35); it is within noise of the best.
    """
    return family(space.family).default_estimator or FALLBACK_ESTIMATOR


def main_job_estimator(estimator: str | None, space: SearchSpace) -> str | None:
    """The estimator expression the main job's BN-NAS search ranks children by: ``estimator`` when
    given (``raynas run --estimator``), else the family's measured best; None means the trained
    supernet's BN indicator (objective ``bn_score``), as BN-NAS ranks.

    - nb201: ``default_estimator`` (Spearman 0.92 on the 1,000 dev cells against the BN indicator's
      0.73-0.75, trained or not). Its members hardly see what BN-only training changes: synflow
      removes BN, FLOPs is a count, and the convolutions of a BN-only supernet keep their init.
    - mobilenet: None. The trained mean-rule BN indicator is the one estimator measured to beat
      #params on mbv3_cifar (tau gain +0.48, interval above zero); no training-free estimator
      or fusion does (benchmarks/RESULTS.md, "Training-free estimators").
    """
    if estimator is not None:
        return estimator
    return default_estimator(space) if space.family in ESTIMATOR_BEATS_BN else None


def default_sampling(space: SearchSpace) -> str:
    """How a supernet of ``space`` samples its children per training step.

    - mobilenet: ``"sandwich"`` (BigNAS). The only sampling measured on mbv3_cifar, where its
      BN-only supernet gave the mean-rule indicator tau 0.201 (lr 0.5) and 0.189 (lr 2).
    - nb201: ``"uniform"`` (single path, as BN-NAS and SPOS train). At lr 0.5 and 6 epochs it
      ranked tau 0.428 against the sandwich rule's 0.420 (|gamma|, 2-seed ground truth). The gap
      is far inside the bootstrap noise (gain over step 0: -0.038 [-0.094, +0.020] against
      -0.046 [-0.100, +0.010]), and neither beats the untrained count of conv edges (0.466).

    Each family records its value as ``Family.default_sampling``; a family with no measurement
    gets ``FALLBACK_SAMPLING``.
    """
    return family(space.family).default_sampling or FALLBACK_SAMPLING


@overload
def resolve_depth_rule(depth_rule: str | None, space: SearchSpace) -> str: ...
@overload
def resolve_depth_rule(depth_rule: str | None, space: SearchSpace | None) -> str | None: ...


def resolve_depth_rule(depth_rule: str | None, space: SearchSpace | None) -> str | None:
    """``depth_rule`` checked, or the default of ``space`` when it is None (None without a space)."""
    if depth_rule is None:
        return None if space is None else default_depth_rule(space)
    if depth_rule not in DEPTH_RULES:
        raise ConfigError(f"unknown depth_rule {depth_rule!r}; valid depth rules: {list(DEPTH_RULES)}")
    return depth_rule


def resolve_sampling(sampling: str | None, space: SearchSpace) -> str:
    """``sampling`` checked, or the default of ``space`` when it is None."""
    if sampling is None:
        return default_sampling(space)
    if sampling not in SAMPLINGS:
        raise ConfigError(f"unknown sampling {sampling!r}; valid samplings: {list(SAMPLINGS)}")
    return sampling
