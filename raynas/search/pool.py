"""A pool of evaluator actors holding one supernet's weights, fed batches of children.

Actors restart when their process dies (``max_restarts``), and Ray retries the batch that was
running (``max_task_retries``). If a batch still fails with a dead actor, the pool resubmits it to
another actor. Results come back in input order, exactly one row per architecture.

An actor gone for good (dead past its restarts) leaves the pool; when none is left, the call
raises ``EvaluationError`` naming the batches it could not run. Before any batch, the pool checks
that the cluster can hold its actors: a local instance refuses at once, a joined cluster (which
may grow) is waited for up to ``wait_timeout`` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import ray
from ray.actor import ActorHandle
from ray.exceptions import ActorUnavailableError, RayActorError

from raynas.data import DataSplits
from raynas.errors import ConfigError, EvaluationError
from raynas.estimate import IndicatorSettings
from raynas.estimate.calibration import CalibrationConfig
from raynas.estimate.training_free import ProbeBatch
from raynas.model_record import DataInfo, ModelRecord
from raynas.ray_env import POLL_SECONDS, ResourceRequest, require, wait_started
from raynas.search.evaluator import Evaluator, EvaluatorActor, Shared, state_to_numpy
from raynas.space import Arch, SearchSpace
from raynas.supernet import Supernet
from raynas.logs import get_logger

logger = get_logger(__name__)
MATRIX_CHUNK_ROWS = 1 << 18
"""Most rows of an index matrix sent to one actor at once (``score_matrix``): 26 MB of int16 on mbv3_cifar."""


class SupernetSource(Protocol):
    """What a pool serves children of: a trained checkpoint (``LoadedCheckpoint``) or ``UntrainedSupernet``."""

    @property
    def supernet(self) -> Supernet: ...
    @property
    def space(self) -> SearchSpace: ...
    @property
    def model(self) -> ModelRecord: ...
    @property
    def checkpoint_id(self) -> str: ...


@dataclass(frozen=True)
class UntrainedSupernet:
    """A supernet at its seeded initialisation: what training-free estimators slice children from.

    A search runs over it as over a checkpoint (``raynas.search.runner.Subject``): its rows name
    it ``<space>@init-<seed>``, and it has no folder."""

    model: ModelRecord
    seed: int = 0

    @property
    def space(self) -> SearchSpace:
        return self.model.space

    @property
    def data(self) -> DataInfo:
        return self.model.data

    @property
    def checkpoint_id(self) -> str:
        return f"{self.space.name}@init-{self.seed}"

    @property
    def path(self) -> Path | None:
        return None

    @cached_property
    def supernet(self) -> Supernet:
        return self.model.build(self.seed)


@dataclass
class PoolConfig:
    num_actors: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_restarts: int = 3
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    indicator: IndicatorSettings = field(default_factory=IndicatorSettings)
    spread: bool = True
    wait_timeout: float = 600.0
    """Seconds a joined cluster may take to make room for every actor (an autoscaler adds nodes)."""

    def request(self) -> ResourceRequest:
        return ResourceRequest(self.num_actors, self.num_cpus, self.num_gpus, "evaluator actors", "--actors")


def pack_eval_data(data: DataSplits) -> dict[str, np.ndarray]:
    return {"calib_images": data.calib.images.numpy(), "calib_labels": data.calib.labels.numpy(),
            "val_images": data.val.images.numpy(), "val_labels": data.val.labels.numpy()}


class EvaluatorPool:
    """``score``, ``score_matrix`` and ``calibrate_and_evaluate`` over many children, farmed out in batches."""

    def __init__(self, checkpoint: SupernetSource, data: DataSplits | None = None, config: PoolConfig = PoolConfig(),
                 probe: ProbeBatch | None = None):
        if config.num_actors < 1:
            raise ConfigError(f"num_actors must be >= 1, got {config.num_actors}")
        require(config.request())  # a local instance never grows: refuse before starting anything
        self.config = config
        self.checkpoint = checkpoint
        self.probe = probe
        """The minibatch network estimators score children on (``estimate``), or None."""
        weights_ref = ray.put(state_to_numpy(checkpoint.supernet.state_dict()))
        data_ref = ray.put(pack_eval_data(data)) if data is not None else None
        probe_ref = ray.put(probe) if probe is not None else None
        options: dict[str, Any] = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus,
                                   "max_restarts": config.max_restarts, "max_task_retries": config.max_restarts}
        if config.spread:
            options["scheduling_strategy"] = "SPREAD"
        self._refs = (weights_ref, data_ref, probe_ref)  # kept alive: restarted actors rebuild from them
        device = "cuda" if config.num_gpus > 0 else "cpu"
        shared: Shared = {"weights": weights_ref, "data": data_ref, "probe": probe_ref}
        # ray types ``.remote()`` of an actor class as "a handle or the class itself"; it is a handle
        self.actors = [
            cast(ActorHandle[Evaluator], EvaluatorActor.options(**options).remote(
                shared, checkpoint.model, config.calibration, config.indicator, device,
            ))
            for _ in range(config.num_actors)
        ]
        try:
            wait_started([a.pid.remote() for a in self.actors], config.request(), config.wait_timeout)
        except BaseException:  # the caller gets no pool to shut down: end the actors here
            self.shutdown()
            raise

    def score(self, archs: Sequence[Arch], batch_size: int = 4096) -> list[dict[str, Any]]:
        return self._map("score", archs, batch_size)

    def score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """BN scores of an index matrix, in row order: chunks of it spread over the actors.

        A prescreen's path: no ``Arch`` and no row dicts, just one float per row.
        """
        if not len(matrix):
            return np.zeros(0)
        chunks = max(len(self.actors), -(-len(matrix) // MATRIX_CHUNK_ROWS))
        return np.concatenate(self._run("score_matrix", np.array_split(matrix, min(chunks, len(matrix)))))

    def calibrate_and_evaluate(self, archs: Sequence[Arch], batch_size: int = 4) -> list[dict[str, Any]]:
        return self._map("calibrate_and_evaluate", archs, batch_size)

    def estimate(self, archs: Sequence[Arch], names: Sequence[str],
                 batch_size: int = 4) -> list[dict[str, str | float]]:
        """Training-free scores (``Evaluator.estimate``) of each child, in input order."""
        return self._map("estimate", archs, batch_size, list(names))

    def _map(self, method: str, archs: Sequence[Arch], batch_size: int, *args: object) -> list[dict[str, Any]]:
        """Run ``method`` over ``archs`` in batches; one row per architecture, in input order."""
        batches = [[a.to_dict() for a in archs[i:i + batch_size]] for i in range(0, len(archs), batch_size)]
        return [row for rows in self._run(method, batches, *args) for row in rows]

    def _run(self, method: str, batches: Sequence[Any], *args: object) -> list[Any]:
        """Run ``method`` on each batch on free actors, results in batch order; a batch whose actor died runs again.

        After a failure the actor is probed (its ``pid``): the probe returns once a restarted
        actor is back, and fails at once for an actor gone for good, which then leaves the pool.
        """
        results: dict[int, Any] = {}
        running: dict[ray.ObjectRef, tuple[int | None, ActorHandle[Evaluator]]] = {}  # batch index, None: probe
        queue, free = deque(range(len(batches))), deque(self.actors)
        cause: BaseException | None = None
        while queue or running:
            while queue and free:
                queued, actor = queue.popleft(), free.popleft()
                running[getattr(actor, method).remote(batches[queued], *args)] = (queued, actor)
            if not running:
                raise self._no_actor_left(method, batches, sorted(queue), cause)
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            if not done:
                continue
            batch, actor = running.pop(done[0])
            try:
                value = ray.get(done[0])
            except RayActorError as err:
                cause = err
                if batch is not None:
                    queue.appendleft(batch)
                if batch is None and not isinstance(err, ActorUnavailableError):
                    self._drop(actor, err)
                else:  # restarting, or gone for good: the probe tells which
                    running[actor.pid.remote()] = (None, actor)
                continue
            if batch is not None:
                results[batch] = value
            free.append(actor)
        return [results[i] for i in range(len(batches))]

    def _drop(self, actor: ActorHandle[Evaluator], err: BaseException) -> None:
        self.actors.remove(actor)
        logger.warning(f"an evaluator actor died for good (max_restarts={self.config.max_restarts}) "
                       f"and left the pool; {len(self.actors)} left: {_first_line(err)}")

    def _no_actor_left(self, method: str, batches: Sequence[Any], unfinished: list[int],
                       cause: BaseException | None) -> EvaluationError:
        starts = np.r_[0, np.cumsum([len(b) for b in batches])]
        spans = ", ".join(f"batch {i} (archs {starts[i]}-{starts[i + 1] - 1})" for i in unfinished[:5])
        spans += " ..." if len(unfinished) > 5 else ""
        first = batches[unfinished[0]]
        keys = [self.checkpoint.space.key(a) for a in self._archs(first[:3])]
        n, restarts = self.config.num_actors, self.config.max_restarts
        return EvaluationError(
            f"no evaluator actor is left: {n} of {n} died for good (max_restarts={restarts}), so {method} of "
            f"{len(unfinished)} of {len(batches)} batches did not run: {spans}; the first holds {keys}"
            f"{' ...' if len(first) > 3 else ''}; last cause: {_first_line(cause)}"
        )

    def _archs(self, batch: Any) -> list[Arch]:
        """The architectures of a batch: dicts, or rows of an index matrix."""
        space = self.checkpoint.space
        return space.from_index_matrix(batch) if isinstance(batch, np.ndarray) else [space.arch(a) for a in batch]

    def memory_mb(self) -> list[float]:
        return ray.get([a.memory_mb.remote() for a in self.actors])

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> "EvaluatorPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _first_line(err: BaseException | None) -> str:
    if err is None:
        return "unknown"
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
