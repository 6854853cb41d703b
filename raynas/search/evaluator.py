"""The evaluator actor: one supernet built once from shared weights, serving batches of children.

Weights travel as one ``ray.put`` of a dict of numpy arrays: every actor on a node reads the same
object-store pages (zero-copy), and only copies them into its own supernet once, at start.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, TypeVar

import numpy as np
import ray
import torch

from raynas.data import ImageSet
from raynas.estimate import BNIndicator, IndicatorSettings
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.estimate.training_free import BUILD, ProbeBatch, ScoringContext, score_children
from raynas.model_record import ModelRecord
from raynas.space import Arch
from raynas.space.dimension import Choice

T = TypeVar("T")
Arrays = dict[str, np.ndarray]


class Shared(TypedDict):
    """What every actor of a pool reads once, at start: object-store refs, or the values themselves."""

    weights: ray.ObjectRef[Arrays] | Arrays
    """The supernet's state dict as numpy arrays (``state_to_numpy``)."""
    data: ray.ObjectRef[Arrays] | Arrays | None
    """The calibration and validation images (``pack_eval_data``), or None: no calibration."""
    probe: NotRequired[ray.ObjectRef[ProbeBatch] | ProbeBatch | None]
    """The minibatch network estimators score children on (``estimate``)."""


def state_to_numpy(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


class Evaluator:
    """Scores and calibrates children of one trained supernet (usable in-process or as an actor)."""

    def __init__(
        self,
        shared: Shared,
        model: ModelRecord,
        calibration: CalibrationConfig = CalibrationConfig(),
        indicator: IndicatorSettings | None = None,
        device: str = "cpu",
    ) -> None:
        # Refs nested in a dict are not resolved by Ray before __init__: fetch them here, so a
        # restarted actor re-reads the same zero-copy objects (the pool keeps them alive).
        data_ref, probe_ref = shared["data"], shared.get("probe")
        weights = _fetched(shared["weights"])
        data = None if data_ref is None else _fetched(data_ref)
        probe = None if probe_ref is None else _fetched(probe_ref)
        self.space, self.info = model.space, model.data
        self.device = torch.device(device)
        self.supernet = model.build()
        with warnings.catch_warnings():  # object-store arrays are read-only; load_state_dict copies them
            warnings.simplefilter("ignore", UserWarning)
            self.supernet.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        self.supernet.to(self.device).eval()
        self.indicator = BNIndicator(**(indicator or {})).fit(self.supernet)
        self.scoring = ScoringContext(self.supernet, probe, indicator.copy() if indicator else {})
        self.calibration = calibration
        self.calib = self.val = None
        if data is not None:
            self.calib = _image_set(data["calib_images"], data["calib_labels"], self.device)
            self.val = _image_set(data["val_images"], data["val_labels"], self.device)
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"

    def score(self, archs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """BN-indicator scores: a table lookup, no data, no forward pass."""
        started = time.perf_counter()
        parsed = [self.space.arch(a) for a in archs]
        scores = self.indicator.score(parsed)
        each = (time.perf_counter() - started) / max(1, len(parsed))
        return [self._row(arch, {"bn_score": float(s)}, "bn_score", each) for arch, s in zip(parsed, scores)]

    def score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """BN-indicator scores of an index matrix (a prescreen's millions of children): no Arch is built."""
        return self.indicator.score(matrix)

    def estimate(self, archs: list[Mapping[str, Choice]], names: list[str]) -> list[dict[str, str | float]]:
        """Training-free scores (``raynas.estimate.training_free``) of each child, with the
        CPU-seconds each estimator spent on it (``<name>_cpu_s``) and the slicing's (``network_cpu_s``)."""
        parsed = [self.space.arch(a) for a in archs]
        scores = score_children(self.scoring, parsed, names)
        return [{"arch": self.space.key(arch), **{n: float(v[i]) for n, v in scores.values.items()},
                 **{f"{n}_cpu_s": float(v[i]) for n, v in scores.cpu_seconds.items()}}
                for i, arch in enumerate(parsed)]

    def calibrate_and_evaluate(self, archs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """BN-calibrate each child on the seeded subset, then measure top-1/top-5/loss."""
        if self.calib is None or self.val is None:
            raise RuntimeError("this evaluator was built without data; pass data to calibrate")
        rows = []
        for values in archs:
            started = time.perf_counter()
            try:
                arch = self.space.arch(values)
                metrics = calibrate_and_evaluate(
                    self.supernet, arch, self.calib, self.val, self.info.mean, self.info.std, self.calibration
                )
                rows.append(self._row(arch, {**metrics, "split": "val"}, "calibrate", time.perf_counter() - started))
            except Exception as err:  # recorded as a failed row, never dropped
                rows.append({"arch": _key_or_repr(self.space, values), "status": "failed", "evaluator": "calibrate",
                             "error": f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}",
                             "eval_seconds": time.perf_counter() - started, "node_id": self.node_id})
        return rows

    def memory_mb(self) -> float:
        """Resident memory of this process, to check that evaluations do not leak."""
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def pid(self) -> int:
        """This process's id: the pool's liveness probe, and what a fault test kills."""
        return os.getpid()

    def _row(self, arch: Arch, metrics: dict[str, Any], evaluator: str, seconds: float) -> dict[str, Any]:
        return {"arch": self.space.key(arch), "status": "ok", "evaluator": evaluator, "node_id": self.node_id,
                **{k: v for k, v in metrics.items() if k not in ("eval_seconds", "calib_seconds")},
                "eval_seconds": metrics.get("eval_seconds", seconds)}


def _fetched(value: ray.ObjectRef[T] | T) -> T:
    """The object behind a ref, or the value itself (an in-process ``Evaluator``)."""
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def _image_set(images: np.ndarray, labels: np.ndarray, device: torch.device) -> ImageSet:
    return ImageSet(torch.from_numpy(np.array(images)).to(device), torch.from_numpy(np.array(labels)).to(device))


def _key_or_repr(space, values: Any) -> str:
    try:
        return space.key(space.arch(values))
    except Exception:
        return repr(values)


EvaluatorActor = ray.remote(Evaluator)
