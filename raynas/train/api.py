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

from raynas.data import DataSplits, StreamSplits, open_data
from raynas.errors import ConfigError, DataError, TrainingError
from raynas.logs import get_logger
from raynas.ray_env import check_resources, ensure_ray, started_locally
from raynas.space import Arch, SearchSpace
from raynas.model_record import ModelRecord
from raynas.train.checkpoint import META_FILE, latest_checkpoint, model_record, read_meta, read_state
from raynas.train.config import TrainConfig
from raynas.train.data_feed import pack_splits, pack_stream, packed_model
from raynas.train.loop import PROGRESS_FILE, STARTS_FILE, progress_line, train_loop
from raynas.train.modes import same_schedule_so_far

logger = get_logger(__name__)


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
    data: str | DataSplits | StreamSplits,
    config: TrainConfig,
    scaling: Scaling = Scaling(),
    out_dir: str | os.PathLike[str] = "runs",
    name: str | None = None,
    address: str | None = None,
    max_failures: int = 0,
    fault: dict[str, Any] | None = None,
    input: str = "auto",
) -> TrainResult:
    """Train ``space``'s supernet with the sandwich rule; returns the last checkpoint.

    Re-running with the same ``out_dir`` and ``name`` resumes from that run's latest checkpoint,
    with the same space, data and config (more epochs only where the schedule so far is
    unchanged; see ``_check_resume``). ``max_failures`` restarts a lost or failed worker group
    that many times from the latest checkpoint; each restart is printed.

    ``input`` says how a DATA string is read: "memory" (decoded once, shipped through Ray's
    object store), "stream" (imagefolder:ROOT or shards:ROOT: listed here, decoded by Ray Data
    tasks on the cluster and streamed to the workers; ``raynas.data.streaming``) or "auto"
    (stream when the decoded images would not fit comfortably in memory). Both give the same
    splits; on an image folder they train on the same batches.
    """
    return _fit(space, data, config, scaling, out_dir, name, address, max_failures, fault, None, input)


def retrain(
    space: SearchSpace,
    arch: Arch,
    data: str | DataSplits | StreamSplits,
    config: TrainConfig,
    scaling: Scaling = Scaling(),
    out_dir: str | os.PathLike[str] = "runs",
    name: str | None = None,
    address: str | None = None,
    input: str = "auto",
) -> TrainResult:
    """Train one child from scratch with the same loop (BN-NAS's final step, ground truth)."""
    config = config.replace(mode="full", num_random=0)
    return _fit(space, data, config, scaling, out_dir, name, address, 0, None, arch.to_dict(), input)


def _fit(space, data, config, scaling, out_dir, name, address, max_failures, fault, fixed_arch, input) -> TrainResult:
    if max_failures < 0:
        raise ConfigError(f"max_failures must be >= 0, got {max_failures}")
    ensure_ray(address)
    check_resources(max(scaling.num_workers, 1) if scaling.num_workers else 0, scaling.cpus_per_worker,
                    1.0 if scaling.use_gpu else 0.0)
    packed = _pack(data, config, scaling, input, with_val=fixed_arch is not None)
    name = name or f"{space.name}-{config.mode}-{uuid.uuid4().hex[:6]}"
    if not re.fullmatch(r"[\w.-]+", name):
        raise TrainingError(f"run name must use letters, digits, '.', '_' or '-', got {name!r}")
    storage = Path(out_dir).resolve()
    record = packed_model(space, packed, config.bn_layout)
    loop_config = {
        "train": config.to_dict(), "model": record, "data_ref": ray.put(packed), "use_gpu": scaling.use_gpu, "run_name": name, "fixed_arch": fixed_arch,
        "fault": fault, "local_dir": str(storage / name) if scaling.num_workers == 0 else None,
        "run_dir": str(storage / name),
    }
    previous = _check_resume(storage / name, loop_config, config)
    loop_config["resume_from"] = str(previous) if previous is not None else None
    if previous is not None and int(read_meta(previous)["epoch"]) >= config.epochs:
        if config.log_every_epoch:
            logger.info(f"run {name} already finished its {config.epochs} epochs: {previous}")
        return TrainResult(previous, _history(previous), storage / name)
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
        result = _fit_with_progress(trainer, storage / name, config.log_every_epoch, max_failures)
    except Exception as err:  # Ray wraps worker errors; surface ours with the checkpoint kept
        raise _unwrap(err, storage / name) from err
    if result.checkpoint is None:
        raise TrainingError(f"run {name} finished without a checkpoint; see {storage / name}")
    return TrainResult(Path(result.checkpoint.path), _history(Path(result.checkpoint.path)), storage / name)


def _pack(data: str | DataSplits | StreamSplits, config: TrainConfig, scaling: Scaling, input: str,
          with_val: bool) -> dict[str, Any]:
    """What the workers read: decoded images (``pack_splits``) or a file list to stream (``pack_stream``)."""
    splits = open_data(data, seed=config.seed, input=input) if isinstance(data, str) else data
    if isinstance(splits, StreamSplits) and input == "memory":
        splits = splits.in_memory()
    if isinstance(splits, DataSplits):
        if input == "stream":
            raise ConfigError("input='stream' needs a DATA string (imagefolder:ROOT or shards:ROOT) or StreamSplits, "
                              "got images already decoded (DataSplits); pass the string instead")
        return pack_splits(splits, config.train_images)
    busy = scaling.num_workers * scaling.cpus_per_worker
    if started_locally() and ray.cluster_resources().get("CPU", 0) - busy < 1:
        raise ConfigError(f"streamed input decodes images in Ray Data tasks, which need a CPU beside the training "
                          f"workers: {scaling.num_workers} workers x {scaling.cpus_per_worker:g} CPU leave none of the "
                          f"Ray instance's {ray.cluster_resources().get('CPU', 0):g}; lower --workers or use --input memory")
    return pack_stream(splits, config.train_images, with_val)


def _check_resume(run_dir: Path, loop_config: dict[str, Any], config: TrainConfig) -> Path | None:
    """Refuse to continue a run under settings other than the ones it was trained with.

    Otherwise its meta.json would describe a run that never happened (say, 10 cosine epochs,
    whose first 5 followed a 5-epoch cosine). The one change allowed is the epoch count where
    the learning rates of the steps already trained stay the same (a constant schedule): the
    continued run then equals a run trained with the new count from the start. Returns the
    checkpoint to resume from, None for a new run.
    """
    previous = latest_checkpoint(run_dir)
    if previous is None:
        return None
    meta, source = read_meta(previous), previous / META_FILE
    read_state(previous)  # an unreadable or unsafe state fails here, before any worker starts
    try:
        old = TrainConfig.from_dict(meta["config"])
        old_record = model_record(meta, str(source))
    except (ConfigError, KeyError, TypeError) as err:
        raise ConfigError(f"{source}: cannot resume from it: {err}") from None
    changed, problems = _differences(meta, old, old_record, config, loop_config)
    done = int(meta.get("epoch", 0))
    only_epochs = changed == ["epochs"] and len(problems) == 1
    if not problems or (only_epochs and _extends(old, config, meta, done)):
        return previous
    raise ConfigError(f"run {run_dir.name} ({source}) was trained with other settings than this call asks for: "
                      f"{'; '.join(problems)}; {_resume_advice(old, config, done, only_epochs)}")


def _differences(meta: dict[str, Any], old: TrainConfig, old_record: ModelRecord, new: TrainConfig,
                 loop_config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The config keys that differ, and every difference as the user should read it."""
    was, now = old.to_dict(), new.to_dict()
    changed = [key for key in now if key != "log_every_epoch" and was[key] != now[key]]
    problems = [f"{key}: {was[key]!r} -> {now[key]!r}" for key in changed]
    record: ModelRecord = loop_config["model"]
    if _plain(old_record.space_definition) != _plain(record.space_definition):
        problems.append("the search space differs")
    if _plain(meta.get("fixed_arch")) != _plain(loop_config["fixed_arch"]):
        problems.append("the retrained child differs")
    data_was, data_now = old_record.data.to_dict(), record.data.to_dict()
    if data_was != data_now:
        problems.append(f"the data differs ({', '.join(k for k in data_now if data_was.get(k) != data_now[k])})")
    return changed, problems


def _resume_advice(old: TrainConfig, new: TrainConfig, done: int, only_epochs: bool) -> str:
    if only_epochs and new.epochs < done:
        return (f"it already trained {done} epochs; resume with epochs={old.epochs}, or start a new run under "
                "another name")
    if only_epochs:
        return (f"the {old.schedule} schedule spreads over all epochs, so a {new.epochs}-epoch run would have given "
                f"other learning rates to the {done} epoch(s) already trained; train a new run under another name "
                f"for {new.epochs} epochs, or resume with epochs={old.epochs}")
    return "resume with the run's own settings (the 'config' of its meta.json), or start a new run under another name"


def _extends(old: TrainConfig, new: TrainConfig, meta: dict[str, Any], done: int) -> bool:
    """Whether ``new`` only changes the epoch count, to at least ``done``, keeping past learning rates."""
    history = meta.get("metrics") or []
    if new.epochs < done or not done or not history or "step" not in history[-1]:
        return False
    steps = int(history[-1]["step"])
    return same_schedule_so_far(old, new, steps, steps // done)


def _plain(value: Any) -> Any:
    """``value`` as meta.json stores it (lists for tuples), so a loop setting compares with its record."""
    return json.loads(json.dumps(value, default=str))


class _JsonLines:
    """The complete JSON lines a worker appended to ``file`` since this reader was made."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.seen = len(self._lines())

    def _lines(self) -> list[str]:
        text = self.file.read_text() if self.file.exists() else ""
        return text[:text.rfind("\n") + 1].splitlines()  # a line still being written waits

    def new(self) -> list[dict[str, Any]]:
        lines = self._lines()
        fresh, self.seen = lines[self.seen:], len(lines)
        return [json.loads(line) for line in fresh]


def _fit_with_progress(trainer: TorchTrainer, run_dir: Path, show: bool, max_failures: int) -> Any:
    """Run ``trainer.fit()`` while printing a line per finished epoch and one per restart of the workers.

    The worker loop appends each epoch's metrics to the progress file and, on every start, the
    epoch it resumes from to the starts file: a second start within one fit is a restart.
    """
    progress, starts = _JsonLines(run_dir / PROGRESS_FILE), _JsonLines(run_dir / STARTS_FILE)
    outcome: dict[str, Any] = {}
    started = 0

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # re-raised in the calling thread
            outcome["error"] = err

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    while True:
        thread.join(timeout=0.5)
        # A start from epoch E comes after epoch E's line and before epoch E + 1's.
        events = [((m["epoch"], 0), m) for m in progress.new()] + [((s["from_epoch"], 1), s) for s in starts.new()]
        for _, event in sorted(events, key=lambda keyed: keyed[0]):
            if "from_epoch" in event:
                started += 1
                line = _start_line(run_dir.name, event["from_epoch"], started - 1, max_failures)
                if line and (show or started > 1):
                    logger.info(line)
            elif show:
                logger.info(progress_line(event, event["epochs"]))
        if not thread.is_alive():
            break
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _start_line(name: str, from_epoch: int, restart: int, max_failures: int) -> str | None:
    """What a start of the worker loop means to the user: a resume, a restart, or nothing to say."""
    where = f"checkpoint epoch {from_epoch}" if from_epoch else "the start (no checkpoint yet)"
    if restart:
        return f"training worker lost or failed; restarting from {where} (restart {restart}/{max_failures})"
    return f"resuming run {name} from {where}" if from_epoch else None


def _history(checkpoint: Path) -> list[dict[str, Any]]:
    return list(read_meta(checkpoint).get("metrics", []))


def _unwrap(err: Exception, run_dir: Path) -> Exception:
    message = str(err)
    kept = latest_checkpoint(run_dir)
    where = f"last good checkpoint: {kept}" if kept else "no checkpoint was written"
    if isinstance(err, DataError) or "DataError: " in message:  # a bad image met while streaming
        detail = re.findall(r"DataError: ([^\n]*)", message)
        return DataError(f"{detail[-1] if detail else message} ({where})")
    if "TrainingError" in message or isinstance(err, TrainingError):
        found = re.search(r"non-finite loss[^\n]*", message)
        return TrainingError(f"{found.group(0) if found else message} ({where})")
    return TrainingError(f"training failed: {message.strip().splitlines()[-1] if message.strip() else err!r} ({where})")
