"""Score many children with several registered estimators, timing each in CPU-seconds.

Table estimators run once over the whole index matrix. Network estimators run per child: the
child is sliced from the supernet once (its cost is ``network``'s), then every estimator gets
its own fresh copy, so no estimator sees another's gradients, BN statistics or weight changes,
and a score does not depend on which estimators were asked for with it. Children run on one
thread: a float sum's order depends on the thread count, and a score must be the same in every
process (scoring spreads over actors, not threads).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from raynas.estimate.training_free._registry import Estimator, NetworkScore, TableScore, estimator
from raynas.estimate.training_free.probe import ScoringContext
from raynas.space import Arch

BUILD = "network"
"""The key of ``Scores.cpu_seconds`` that holds the time spent slicing children."""


@dataclass(frozen=True)
class Scores:
    """One score per child per estimator, and the CPU-seconds each estimator spent per child."""

    values: dict[str, np.ndarray]
    cpu_seconds: dict[str, np.ndarray]


def score_children(context: ScoringContext, archs: Sequence[Arch], names: Sequence[str]) -> Scores:
    records = [estimator(name) for name in names]
    n = len(archs)
    values = {r.name: np.empty(n) for r in records}
    seconds = {r.name: np.zeros(n) for r in records}
    tables = [r for r in records if r.kind == "table"]
    if tables:
        matrix = context.space.index_matrix(list(archs))
        for record in tables:
            score = cast(TableScore, record.score)  # a "table" record holds a TableScore
            started = time.process_time()
            values[record.name] = np.asarray(score(context, matrix), dtype=np.float64)
            seconds[record.name][:] = (time.process_time() - started) / max(n, 1)
    networks = [r for r in records if r.kind == "network"]
    if networks:
        seconds[BUILD] = np.zeros(n)
        with one_thread():
            _score_networks(context, archs, networks, values, seconds)
    return Scores(values, seconds)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _score_networks(context: ScoringContext, archs: Sequence[Arch], networks: list[Estimator],
                    values: dict[str, np.ndarray], seconds: dict[str, np.ndarray]) -> None:
    for i, arch in enumerate(archs):
        started = time.process_time()
        child, batch = context.child(arch), context.minibatch(arch)
        seconds[BUILD][i] = time.process_time() - started
        for record in networks:
            score = cast(NetworkScore, record.score)  # a "network" record holds a NetworkScore
            started = time.process_time()
            values[record.name][i] = score(copy.deepcopy(child), batch)
            seconds[record.name][i] = time.process_time() - started
