"""A pool of evaluator actors holding one supernet's weights, fed batches of children.

Actors restart when their process dies (``max_restarts``), and Ray retries the batch that was
running (``max_task_retries``). If a batch still fails with a dead actor, the pool resubmits it to
another actor. Results come back in input order, exactly one row per architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError

from raynas.data import DataSplits
from raynas.errors import ConfigError
from raynas.estimate.calibration import CalibrationConfig
from raynas.search.evaluator import EvaluatorActor, state_to_numpy
from raynas.space import Arch
from raynas.train.checkpoint import LoadedCheckpoint, read_meta


@dataclass
class PoolConfig:
    num_actors: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_restarts: int = 3
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    indicator: dict[str, Any] = field(default_factory=dict)
    spread: bool = True


def pack_eval_data(data: DataSplits) -> dict[str, Any]:
    return {"calib_images": data.calib.images.numpy(), "calib_labels": data.calib.labels.numpy(),
            "val_images": data.val.images.numpy(), "val_labels": data.val.labels.numpy()}


class EvaluatorPool:
    """``score`` and ``calibrate_and_evaluate`` over many children, farmed out in batches."""

    def __init__(self, checkpoint: LoadedCheckpoint, data: DataSplits | None = None, config: PoolConfig = PoolConfig()):
        if config.num_actors < 1:
            raise ConfigError(f"num_actors must be >= 1, got {config.num_actors}")
        self.config = config
        self.checkpoint = checkpoint
        meta = read_meta(checkpoint.path)
        weights_ref = ray.put(state_to_numpy(checkpoint.supernet.state_dict()))
        data_ref = ray.put(pack_eval_data(data)) if data is not None else None
        options: dict[str, Any] = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus,
                                   "max_restarts": config.max_restarts, "max_task_retries": config.max_restarts}
        if config.spread:
            options["scheduling_strategy"] = "SPREAD"
        self._refs = (weights_ref, data_ref)  # kept alive: restarted actors rebuild from them
        device = "cuda" if config.num_gpus > 0 else "cpu"
        self.actors = [
            EvaluatorActor.options(**options).remote({"weights": weights_ref, "data": data_ref}, meta,
                                                     config.calibration, config.indicator, device)
            for _ in range(config.num_actors)
        ]

    def score(self, archs: Sequence[Arch], batch_size: int = 4096) -> list[dict[str, Any]]:
        return self._map("score", archs, batch_size)

    def calibrate_and_evaluate(self, archs: Sequence[Arch], batch_size: int = 4) -> list[dict[str, Any]]:
        return self._map("calibrate_and_evaluate", archs, batch_size)

    def _map(self, method: str, archs: Sequence[Arch], batch_size: int) -> list[dict[str, Any]]:
        batches = [[a.to_dict() for a in archs[i:i + batch_size]] for i in range(0, len(archs), batch_size)]
        results: dict[int, list[dict[str, Any]]] = {}
        pending: dict[ray.ObjectRef, tuple[int, int]] = {}
        queue = list(range(len(batches)))
        free = list(range(len(self.actors)))
        while queue or pending:
            while queue and free:
                batch, actor = queue.pop(0), free.pop(0)
                pending[getattr(self.actors[actor], method).remote(batches[batch])] = (batch, actor)
            done, _ = ray.wait(list(pending), num_returns=1)
            batch, actor = pending.pop(done[0])
            free.append(actor)
            try:
                results[batch] = ray.get(done[0])
            except RayActorError:
                queue.insert(0, batch)  # the actor died past its retries: run the batch elsewhere
        return [row for i in range(len(batches)) for row in results[i]]

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
