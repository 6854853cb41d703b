"""Proxy training on Ray under a CPU-second budget: never start a child the budget cannot pay for.

A multi-fidelity search spends its budget one child at a time, and children train in parallel,
one Ray task per CPU. ``train_within_budget`` submits a child only when what is spent, what the
children in flight are expected to cost and what this one is expected to cost all fit in the
budget. A child's expected cost is the mean of those already trained at the same fidelity, or,
before any has finished, the caller's estimate. While there is no estimate at all, one child runs
alone to measure it. So a search ends within about one child's cost of its budget.

CPU-seconds are the training tasks' own (``train_proxy``: process time, all threads), so other
processes sharing the machine do not make a child look dear.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from raynas.bpe.proxy import _train_all
from raynas.search.runner import Row
from raynas.space import SearchSpace
from raynas.train import TrainConfig


@dataclass
class Budget:
    """CPU-seconds allowed and spent; ``spent`` only grows."""

    total: float
    spent: float = 0.0

    @property
    def left(self) -> float:
        return self.total - self.spent

    def charge(self, seconds: float) -> None:
        self.spent += float(seconds)


@dataclass
class CostEstimate:
    """The expected CPU-seconds of one child at one fidelity: a prior, then the mean of the measured."""

    prior: float | None = None
    measured: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.measured.append(float(seconds))

    @property
    def value(self) -> float | None:
        if self.measured:
            return sum(self.measured) / len(self.measured)
        return self.prior


@dataclass(frozen=True)
class ProxyJob:
    """What every child of one fidelity trains with: the proxy space, its packed data, its config."""

    proxy: SearchSpace
    packed: Row
    config: TrainConfig
    use_gpu: bool = False
    cpus_per_arch: float = 1.0


def train_within_budget(job: ProxyJob, keys: Sequence[str], budget: Budget, estimate: CostEstimate,
                        slots: int, on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Train ``keys`` best-first, ``slots`` at a time, while the budget pays; the rows of those trained.

    Each finished child is charged to ``budget`` and added to ``estimate``; ``on_row`` sees it at
    once (to record it). Children not started because the budget ran out are left out.
    """
    rows: list[Row] = []
    rows_in_order = _train_all(job.proxy, list(keys), job.packed, job.config, job.use_gpu, job.cpus_per_arch,
                               may_start=lambda in_flight: _affordable(budget, estimate, in_flight), slots=slots)
    for row in rows_in_order:
        budget.charge(row["cpu_seconds"])
        estimate.add(row["cpu_seconds"])
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def _affordable(budget: Budget, estimate: CostEstimate, in_flight: int) -> bool:
    """Whether one more child fits: with no estimate yet, only when nothing is in flight (to measure one)."""
    cost = estimate.value
    if cost is None or not math.isfinite(cost):
        return in_flight == 0 and budget.left > 0
    return budget.spent + (in_flight + 1) * cost <= budget.total
