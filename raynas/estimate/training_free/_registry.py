"""The estimator record: one training-free scorer, registered once, found by name.

An estimator module calls ``register_estimator(Estimator(...))`` at import, as a family module
calls ``register_family``; nothing else names it. Two kinds exist:

- ``network``: ``(child, minibatch) -> float``, run once per child on a fresh copy of the child
  (sliced from the supernet) and one fixed, seeded minibatch;
- ``table``: ``(context, index_matrix) -> array``, vectorised over many children with no forward
  pass (the cost terms and the BN indicator).

Every score is oriented so that higher predicts a better architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from raynas.errors import ConfigError
from raynas.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from raynas.estimate.training_free.probe import Minibatch, ScoringContext

Kind = Literal["network", "table"]
NetworkScore = Callable[["nn.Module", "Minibatch"], float]
TableScore = Callable[["ScoringContext", np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: its name, the paper it follows, and its scoring function."""

    name: str
    kind: Kind
    score: NetworkScore | TableScore
    """``NetworkScore`` for ``network`` estimators, ``TableScore`` for ``table`` ones."""
    paper: str
    needs_data: bool = True
    """False for scores that read no image (cost terms, the BN indicator, synflow)."""


_ESTIMATORS: Registry[Estimator] = Registry("estimator", "estimators", ConfigError)


def register_estimator(record: Estimator) -> Estimator:
    """Make ``record.name`` usable wherever an estimator is accepted; a taken name is an error."""
    return _ESTIMATORS.register(record.name, record)


def estimator(name: str) -> Estimator:
    """The registered estimator ``name``; an unknown name lists the known ones."""
    _load_builtins()
    return _ESTIMATORS.get(name)


def known_estimators() -> list[str]:
    _load_builtins()
    return _ESTIMATORS.names()


def _load_builtins() -> None:
    """Import the shipped estimator modules (each registers itself)."""
    from raynas.estimate.training_free import builtins  # noqa: F401
