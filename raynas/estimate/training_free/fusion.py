"""Estimator expressions, and fusing several estimators' scores into one.

    naswot                      one registered estimator
    fuse:naswot*2+flops         AZ-NAS's sum of log-ranks (Lee & Ham, CVPR 2024), weights optional
    vote:synflow+jacov+snip     the majority vote of Abdelfattah et al. (ICLR 2021)
    ranker:FILE                 a learned ranker (``raynas ranker fit``)

Fusions are relative: a child's log-rank is its rank among a reference population of children.
``fit`` takes that population's member scores (a score file's own children, a prescreen's
sample); ``score`` then places any child in it, so one child can be scored alone, as an
ask/tell search does, and scores the same as it would within the population.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from raynas.errors import ConfigError
from raynas.estimate.training_free._registry import estimator

Kind = Literal["estimator", "fuse", "vote", "ranker"]
Columns = Mapping[str, np.ndarray]
VOTE_REFERENCE = 4096
"""Most reference children a vote compares each child with (a seeded sample of larger populations)."""
_TERM = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(\*(?P<weight>[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?))?$")


@dataclass(frozen=True)
class Expression:
    """A parsed estimator expression: its text (the column it fills) and what it is made of."""

    text: str
    kind: Kind
    members: tuple[str, ...]
    weights: tuple[float, ...] = ()
    path: Path | None = None

    @property
    def base(self) -> bool:
        """Whether this is one registered estimator (computed per child, not derived from others)."""
        return self.kind == "estimator"


def parse_expression(text: str) -> Expression:
    """One expression; a malformed one or an unknown member is a ``ConfigError`` naming both."""
    text = text.strip()
    prefix, sep, body = text.partition(":")
    if not sep:
        estimator(text)  # unknown names list the known ones
        return Expression(text, "estimator", (text,))
    if prefix == "ranker":
        if not body:
            raise ConfigError(f"estimator {text!r}: ranker: needs a file, e.g. ranker:runs/ranker.json")
        return Expression(text, "ranker", (), path=Path(body))
    if prefix not in ("fuse", "vote"):
        raise ConfigError(f"estimator {text!r}: unknown prefix {prefix!r}; valid: fuse:, vote:, ranker:")
    names, weights = [], []
    for term in body.split("+"):
        match = _TERM.match(term.strip())
        if match is None:
            raise ConfigError(f"estimator {text!r}: malformed term {term!r}; expected NAME or NAME*WEIGHT, "
                              "joined by '+', e.g. fuse:naswot*2+flops")
        names.append(estimator(match["name"]).name)
        weights.append(float(match["weight"] or 1.0))
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError(f"estimator {text!r}: {prefix}: needs two or more distinct members, got {names}")
    if prefix == "vote" and any(w != 1.0 for w in weights):
        raise ConfigError(f"estimator {text!r}: a vote takes no weights")
    kind: Kind = "fuse" if prefix == "fuse" else "vote"
    return Expression(text, kind, tuple(names), tuple(weights))


def parse_expressions(text: str) -> list[Expression]:
    """Comma-separated expressions, e.g. ``naswot,flops,fuse:naswot+flops``; repeats are refused."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ConfigError(f"--estimator {text!r}: expected NAME[,NAME...], with no empty entry")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"--estimator {text!r} names an estimator twice")
    return [parse_expression(p) for p in parts]


def _finite(values: np.ndarray) -> np.ndarray:
    """NaN scores rank with -inf, below every real score."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(values), -np.inf, values)


class LogRankFusion:
    """Sum over members of weight * log(rank / m), ranks (average over ties) in a reference of m children."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = weights

    def fit(self, columns: Columns) -> LogRankFusion:
        self.reference_ = {name: np.sort(_finite(columns[name])) for name in self.weights}
        return self

    def score(self, columns: Columns) -> np.ndarray:
        total = np.zeros(len(next(iter(columns.values()))))
        for name, weight in self.weights.items():
            reference, values = self.reference_[name], _finite(columns[name])
            below = np.searchsorted(reference, values, side="left")
            ties = np.searchsorted(reference, values, side="right") - below
            ranks = np.maximum(below + (ties + 1) / 2.0, 0.5)
            total += weight * np.log(ranks / len(reference))
        return total


class MajorityVote:
    """The share of reference children a child beats, where it beats one if more members prefer it."""

    def __init__(self, members: Sequence[str], seed: int = 0) -> None:
        self.members = members
        self.seed = seed

    def fit(self, columns: Columns) -> MajorityVote:
        stacked = np.stack([_finite(columns[m]) for m in self.members], axis=1)
        if len(stacked) > VOTE_REFERENCE:
            rows = np.random.default_rng(self.seed).choice(len(stacked), VOTE_REFERENCE, replace=False)
            stacked = stacked[np.sort(rows)]
        self.reference_ = stacked
        return self

    def score(self, columns: Columns) -> np.ndarray:
        stacked = np.stack([_finite(columns[m]) for m in self.members], axis=1)
        out = np.empty(len(stacked))
        chunk = max(1, (1 << 22) // max(1, len(self.reference_) * len(self.members)))
        for start in range(0, len(stacked), chunk):
            block = stacked[start:start + chunk, None, :]
            margin = (block > self.reference_[None]).sum(axis=2) - (block < self.reference_[None]).sum(axis=2)
            out[start:start + chunk] = (margin > 0).mean(axis=1)
        return out


def fusion_of(expression: Expression) -> LogRankFusion | MajorityVote:
    if expression.kind == "fuse":
        return LogRankFusion(dict(zip(expression.members, expression.weights)))
    if expression.kind == "vote":
        return MajorityVote(expression.members)
    raise ConfigError(f"{expression.text!r} is not a fusion")

