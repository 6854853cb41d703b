"""The Ray Train worker loop: data-parallel sandwich training with checkpoints and resume.

Ray stays here; the step itself (``sandwich_step``) is pure. Every rank samples the same
children for a step (seeded by (seed, step)), so DDP only ever averages gradients of ops that
all ranks used.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import ray
import ray.train
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from raynas.model_record import ModelRecord
from raynas.space import Arch
from raynas.supernet import BATCHNORMS
from raynas.train.checkpoint import MODEL_KEY, latest_checkpoint, read_state, restore_rng, rng_state, write_checkpoint
from raynas.train.config import TrainConfig
from raynas.train.data_feed import ShardFeed, StreamFeed, make_feed
from raynas.train.modes import configure_trainable, make_optimizer, make_scheduler, zero_init_residual_gamma
from raynas.train.sandwich import Member, sandwich_members, sandwich_step
from raynas.logs import format_seconds

PROGRESS_FILE = "progress.jsonl"
STARTS_FILE = "starts.jsonl"
"""One line per start of the worker loop (first start and every restart): the epoch it resumes from."""


class FixedChild(nn.Module):
    """A static child trained standalone, called like a supernet: ``model(x, arch)``."""

    def __init__(self, child: nn.Module) -> None:
        super().__init__()
        self.child = child

    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        return self.child(x)


class AllreduceCounter:
    """A DDP comm hook that counts the bytes it all-reduces, then does the default all-reduce."""

    def __init__(self) -> None:
        self.bytes = 0

    def hook(self, state, bucket):  # un-annotated: DDP rejects string annotations here
        buffer = bucket.buffer()
        self.bytes += buffer.numel() * buffer.element_size()
        world = dist.get_world_size()
        return dist.all_reduce(buffer.div_(world), async_op=True).get_future().then(lambda fut: fut.value()[0])


def data_parallel(model: nn.Module, counter: AllreduceCounter) -> nn.Module:
    """DDP over the default process group, its all-reduces counted; ``model`` itself on one rank.

    Unused parameters are expected: each child uses a slice of the supernet. How often DDP
    all-reduces per step is ``sandwich_step``'s choice (``TrainConfig.grad_sync``).
    """
    if not dist.is_initialized() or dist.get_world_size() < 2:
        return model
    net = DistributedDataParallel(model, find_unused_parameters=True)
    net.register_comm_hook(None, counter.hook)
    return net


def build_model(loop_config: dict[str, Any], config: TrainConfig) -> tuple[nn.Module, Any]:
    record: ModelRecord = loop_config["model"]
    space, supernet = record.space, record.build(seed=config.seed)
    if loop_config.get("fixed_arch"):
        arch = space.arch(loop_config["fixed_arch"])
        return FixedChild(supernet.export(arch).train()), space
    if config.mode == "full":
        zero_init_residual_gamma(supernet)
    return supernet, space


def train_loop(loop_config: dict[str, Any]) -> None:
    """Entry point run by every Ray Train worker (or in the driver when num_workers=0)."""
    config = TrainConfig.from_dict(loop_config["train"])
    torch.manual_seed(config.seed)  # dropout draws from the global generator; resume restores its state
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device() if loop_config.get("use_gpu") else torch.device("cpu")
    packed = ray.get(loop_config["data_ref"])
    feed = make_feed(packed, config.batch_size, rank, world, config.seed, config.augment, device, config.cutout)
    model, space = build_model(loop_config, config)
    model.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    trainable = configure_trainable(model, config)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, feed.steps_per_epoch(), config)
    start_epoch, step, history = _resume(model, optimizer, scheduler, loop_config.get("resume_from"),
                                        loop_config.get("local_dir"))
    if rank == 0:
        _append_line(Path(loop_config["run_dir"]) / STARTS_FILE, {"from_epoch": start_epoch})
    counter = AllreduceCounter()
    net = data_parallel(model, counter)
    fixed = [Member("child", space.arch(loop_config["fixed_arch"]))] if loop_config.get("fixed_arch") else None
    trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
    for epoch in range(start_epoch, config.epochs):
        started, counter.bytes = time.perf_counter(), 0
        members_for = (lambda step: fixed) if fixed else _sandwich_for(space, config)
        step, totals, steps = run_epoch(net, model, feed, epoch, step, members_for, optimizer, scheduler, config,
                                        space.key, before_step=lambda s: _maybe_poison(model, loop_config.get("fault"), s))
        seconds = time.perf_counter() - started
        metrics = _epoch_metrics(epoch, step, totals, steps, seconds, feed, counter, trainable_bytes, scheduler)
        if fixed is not None:
            metrics["val_accuracy"] = accuracy(model, packed, feed, fixed[0].arch, device)
        history.append(metrics)
        _report(rank, model, optimizer, scheduler, epoch, step, history, loop_config, metrics)
        if rank == 0:
            _append_line(Path(loop_config["run_dir"]) / PROGRESS_FILE, {**metrics, "epochs": config.epochs})
        _maybe_inject_fault(loop_config.get("fault"), rank, epoch)


def _sandwich_for(space: Any, config: TrainConfig) -> Callable[[int], list[Member]]:
    return lambda step: sandwich_members(space, config.seed, step, config.num_random, config.sampling)


def run_epoch(
    net: nn.Module, model: nn.Module, feed: ShardFeed | StreamFeed, epoch: int, step: int,
    members_for: Callable[[int], list[Member]], optimizer: torch.optim.Optimizer, scheduler: Any,
    config: TrainConfig, key: Callable[[Arch], str], before_step: Callable[[int], None] | None = None,
) -> tuple[int, dict[str, float], int]:
    """One epoch of sandwich steps on this rank's shard; returns (next step, loss totals, steps)."""
    model.train()
    totals: dict[str, float] = {}
    steps = 0
    for step, images, labels in feed.epoch(epoch, step):  # a StreamFeed yields batches as they are decoded
        steps += 1
        if before_step is not None:
            before_step(step)
        losses = sandwich_step(net, members_for(step), [(images, labels)], feed.to_input, optimizer, config, step, key)
        scheduler.step()
        for role, value in losses.items():
            totals[role] = totals.get(role, 0.0) + value
    return step + (1 if steps else 0), totals, steps


def _resume(
    model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, resume_from: str | None, local_dir: str | None
) -> tuple[int, int, list[dict[str, Any]]]:
    """Continue from the newest complete checkpoint: Ray's latest, or the run folder's newest.

    After an interrupt, Ray Train's snapshot can lag behind the folder (it knew epoch 1 while
    epochs 2 and 3 were on disk); resuming from it would train finished epochs again into
    duplicate folders. So the driver's pick of the folder (``resume_from``, shared storage) and,
    in local mode, the folder as it is now, count too; the highest epoch wins.
    """
    states = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            states.append(read_state(folder))
    on_disk = {Path(path) for path in (resume_from, local_dir and latest_checkpoint(Path(local_dir))) if path}
    states += [read_state(path) for path in on_disk]  # in local mode both are usually one folder: read once
    if not states:
        return 0, 0, []
    state = max(states, key=lambda s: s["epoch"])
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state)
    return state["epoch"] + 1, state["step"], state["history"]


def _epoch_metrics(epoch, step, totals, steps, seconds, feed, counter, trainable_bytes, scheduler) -> dict[str, Any]:
    images = steps * feed.batch_size * feed.world
    metrics: dict[str, Any] = {"epoch": epoch + 1, "step": step, "epoch_seconds": seconds,
                               "images_per_s": images / max(seconds, 1e-9), "step_seconds": seconds / max(steps, 1),
                               "lr": scheduler.get_last_lr()[0], "trainable_bytes": trainable_bytes,
                               "allreduce_bytes_per_step": counter.bytes / max(steps, 1)}
    for role, total in totals.items():
        metrics[f"loss_{role}"] = total / max(steps, 1)
    return metrics


def accuracy(model: nn.Module, packed: dict[str, Any], feed: ShardFeed | StreamFeed, arch: Arch, device: torch.device) -> float:
    model.eval()
    images = torch.from_numpy(packed["val_images"].copy()).to(device)
    labels = torch.from_numpy(packed["val_labels"].copy()).to(device)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 512):
            x = feed.to_input(images[start:start + 512], int(arch.get("resolution", images.shape[-1])))
            correct += int((model(x, arch).argmax(1) == labels[start:start + 512]).sum())
    return correct / max(1, len(labels))


def _report(rank, model, optimizer, scheduler, epoch, step, history, loop_config, metrics) -> None:
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             **rng_state(), "epoch": epoch, "step": step, "history": history}
    meta = {"format": "raynas-checkpoint/2", "run_name": loop_config["run_name"], "epoch": epoch + 1,
            MODEL_KEY: loop_config["model"].to_dict(), "config": loop_config["train"],
            "fixed_arch": loop_config.get("fixed_arch"), "metrics": history}
    if loop_config.get("local_dir"):  # local mode: Ray does not persist checkpoints, so write in place
        folder = write_checkpoint(Path(loop_config["local_dir"]) / f"checkpoint_epoch_{epoch + 1:04d}", state, meta)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(folder)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_checkpoint(Path(tmp), state, meta)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _append_line(file: Path, record: dict[str, Any]) -> None:
    """One JSON line (an epoch's metrics, a start); the driver tails these files to show progress."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "a") as lines:
        lines.write(json.dumps(record) + "\n")


def progress_line(metrics: dict[str, Any], epochs: int) -> str:
    losses = "  ".join(f"{k[5:]} {v:.3f}" for k, v in metrics.items() if k.startswith("loss_"))
    extra = f"  val acc {metrics['val_accuracy']:.3f}" if "val_accuracy" in metrics else ""
    left = (epochs - metrics["epoch"]) * metrics["epoch_seconds"]
    eta = f"  ETA {format_seconds(left)}" if left > 0 else ""
    return (f"epoch {metrics['epoch']}/{epochs}  loss {losses}{extra}  "
            f"{metrics['images_per_s']:.0f} img/s  {metrics['epoch_seconds']:.1f}s  lr {metrics['lr']:.4f}{eta}")


def _maybe_poison(model: nn.Module, fault: dict[str, Any] | None, step: int) -> None:
    """Test hook: at ``at_step``, make one BN gamma NaN, as a numerical blow-up would."""
    if fault and fault.get("kind") == "nan" and step == fault["at_step"]:
        bn = next(m for m in model.modules() if isinstance(m, BATCHNORMS))
        with torch.no_grad():
            bn.weight.fill_(float("nan"))


def _maybe_inject_fault(fault: dict[str, Any] | None, rank: int, epoch: int) -> None:
    """Test hook: after ``after_epoch`` is checkpointed, kill (or fail) ``rank`` once."""
    if not fault or fault.get("kind") == "nan" or rank != fault.get("rank", 0) or epoch + 1 != fault["after_epoch"]:
        return
    marker = Path(fault["marker"])
    if marker.exists():
        return
    marker.write_text(str(os.getpid()))
    if fault.get("kind", "kill") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure after epoch {epoch + 1}")
