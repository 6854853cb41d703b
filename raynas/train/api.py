"""Python API for training: ``train_supernet`` (BigNAS / BN-NAS) and ``retrain`` (one child)."""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchTrainer

from raynas.data import DataSplits, load_data
from raynas.errors import TrainingError
from raynas.ray_env import check_resources, ensure_ray
from raynas.space import Arch, SearchSpace
from raynas.train.checkpoint import latest_checkpoint, read_meta
from raynas.train.config import TrainConfig
from raynas.train.data_feed import pack_splits
from raynas.train.loop import PROGRESS_FILE, progress_line, train_loop


@dataclass(frozen=True)
class Scaling:
    """Where training runs. ``num_workers=0`` runs the loop in the driver (fast tests)."""

    num_workers: int = 0
    use_gpu: bool = False
    cpus_per_worker: float = 1.0


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    metrics: list[dict[str, Any]]
    run_dir: Path


def train_supernet(
    space: SearchSpace,
    data: str | DataSplits,
    config: TrainConfig,
    scaling: Scaling = Scaling(),
    out_dir: str | os.PathLike[str] = "runs",
    name: str | None = None,
    address: str | None = None,
    max_failures: int = 0,
    fault: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``space``'s supernet with the sandwich rule; returns the last checkpoint.

    Re-running with the same ``out_dir`` and ``name`` resumes from that run's latest checkpoint.
    """
    return _fit(space, data, config, scaling, out_dir, name, address, max_failures, fault, fixed_arch=None)


def retrain(
    space: SearchSpace,
    arch: Arch,
    data: str | DataSplits,
    config: TrainConfig,
    scaling: Scaling = Scaling(),
    out_dir: str | os.PathLike[str] = "runs",
    name: str | None = None,
    address: str | None = None,
) -> TrainResult:
    """Train one child from scratch with the same loop (BN-NAS's final step, ground truth)."""
    config = config.replace(mode="full", num_random=0)
    return _fit(space, data, config, scaling, out_dir, name, address, 0, None, fixed_arch=arch.to_dict())


def _fit(space, data, config, scaling, out_dir, name, address, max_failures, fault, fixed_arch) -> TrainResult:
    ensure_ray(address)
    check_resources(max(scaling.num_workers, 1) if scaling.num_workers else 0, scaling.cpus_per_worker,
                    1.0 if scaling.use_gpu else 0.0)
    splits = load_data(data, seed=config.seed) if isinstance(data, str) else data
    packed = pack_splits(splits, config.train_images)
    name = name or f"{space.name}-{config.mode}-{uuid.uuid4().hex[:6]}"
    if not re.fullmatch(r"[\w.-]+", name):
        raise TrainingError(f"run name must use letters, digits, '.', '_' or '-', got {name!r}")
    storage = Path(out_dir).resolve()
    loop_config = {
        "train": config.to_dict(), "space": space.definition, "space_name": space.name, "info": packed["info"],
        "data_ref": ray.put(packed), "use_gpu": scaling.use_gpu, "run_name": name, "fixed_arch": fixed_arch,
        "fault": fault, "local_dir": str(storage / name) if scaling.num_workers == 0 else None,
        "run_dir": str(storage / name),
    }
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
            resources_per_worker={"CPU": scaling.cpus_per_worker} if scaling.num_workers else None,
        ),
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=name, storage_path=str(storage),
            failure_config=ray.train.FailureConfig(max_failures=max_failures, controller_failure_limit=0),
            # Ray Train's own console lines (one per report, and State-API warnings when the
            # dashboard is off) would drown the per-epoch progress; its log files keep them all.
            logging_config=ray.train.LoggingConfig(log_level="ERROR"),
        ),
    )
    try:
        result = _fit_with_progress(trainer, storage / name, config.log_every_epoch)
    except Exception as err:  # Ray wraps worker errors; surface ours with the checkpoint kept
        raise _unwrap(err, storage / name) from err
    if result.checkpoint is None:
        raise TrainingError(f"run {name} finished without a checkpoint; see {storage / name}")
    return TrainResult(Path(result.checkpoint.path), _history(Path(result.checkpoint.path)), storage / name)


def _fit_with_progress(trainer: TorchTrainer, run_dir: Path, show: bool) -> Any:
    """Run ``trainer.fit()`` while printing one line per finished epoch from the run's progress file."""
    progress = run_dir / PROGRESS_FILE
    seen = len(progress.read_text().splitlines()) if progress.exists() else 0
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # re-raised in the calling thread
            outcome["error"] = err

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    while thread.is_alive() or seen is not None:
        thread.join(timeout=0.5)
        if show and progress.exists():
            lines = progress.read_text().splitlines()
            for line in lines[seen:]:
                metrics = json.loads(line)
                print(progress_line(metrics, metrics["epochs"]), flush=True)
            seen = len(lines)
        if not thread.is_alive():
            break
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _history(checkpoint: Path) -> list[dict[str, Any]]:
    return list(read_meta(checkpoint).get("metrics", []))


def _unwrap(err: Exception, run_dir: Path) -> Exception:
    message = str(err)
    kept = latest_checkpoint(run_dir)
    where = f"last good checkpoint: {kept}" if kept else "no checkpoint was written"
    if "TrainingError" in message or isinstance(err, TrainingError):
        detail = re.search(r"non-finite loss[^\n]*", message)
        return TrainingError(f"{detail.group(0) if detail else message} ({where})")
    return TrainingError(f"training failed: {message.strip().splitlines()[-1] if message.strip() else err!r} ({where})")
