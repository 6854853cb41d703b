"""BN calibration (BigNAS) and evaluation of one child of a shared-weight supernet.

Before a child is evaluated, its BN statistics are recomputed: reset, then a cumulative average
(momentum=None) over a fixed, seeded calibration subset of N images, at the child's own
resolution. Only BN layers run in train mode during calibration; dropout stays off.

Devices. Each function takes ``device``: None runs where the supernet's parameters are;
"cpu", "cuda" or "cuda:i" moves the supernet there (in place, where it then stays) and every
batch as it is used, so image sets may stay in host memory as uint8. Asking for a GPU that
is not there is a ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raynas.data import ImageSet, to_model_input
from raynas.estimate.device import resolve_device
from raynas.space import Arch
from raynas.supernet import BATCHNORMS, Supernet


@dataclass(frozen=True)
class CalibrationConfig:
    """N calibration images (recorded with every result), batch sizes, and the subset seed."""

    images: int = 2000
    batch_size: int = 256
    eval_batch_size: int = 1000
    seed: int = 0


def calibration_subset(calib: ImageSet, config: CalibrationConfig) -> ImageSet:
    """The same N images for every child and every call with this seed."""
    order = torch.randperm(len(calib), generator=torch.Generator().manual_seed(config.seed))
    return calib.subset(order[: min(config.images, len(calib))])


@contextlib.contextmanager
def bn_calibration_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode except BN, whose stats are reset and accumulated with momentum=None."""
    was_training = model.training
    bns = [m for m in model.modules() if isinstance(m, BATCHNORMS)]
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)


def _on_device(supernet: Supernet, device: str | torch.device | None) -> torch.device:
    """Move ``supernet`` to ``device`` (None: leave it where it is) and return where it runs."""
    if device is None:
        return next(supernet.parameters()).device
    dev = resolve_device(device)
    supernet.to(dev)
    return dev


def calibrate_bn(supernet: Supernet, arch: Arch, images: torch.Tensor, mean, std, batch_size: int,
                 device: str | torch.device | None = None) -> None:
    """Recompute the BN statistics of ``arch`` on ``images`` at the child's resolution."""
    resolution = int(arch.get("resolution", images.shape[-1]))
    dev = _on_device(supernet, device)
    with bn_calibration_mode(supernet), torch.no_grad(), supernet.activated(arch):
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(dev, non_blocking=True)
            supernet(to_model_input(batch, mean, std, resolution))


def evaluate(supernet: Supernet, arch: Arch, data: ImageSet, mean, std, batch_size: int,
             device: str | torch.device | None = None) -> dict[str, float]:
    """Top-1, top-5 and mean cross-entropy of ``arch`` on ``data`` (eval mode)."""
    resolution = int(arch.get("resolution", data.images.shape[-1]))
    dev = _on_device(supernet, device)
    supernet.eval()
    correct1 = correct5 = 0
    loss = 0.0
    with torch.no_grad(), supernet.activated(arch):
        for start in range(0, len(data), batch_size):
            x = to_model_input(data.images[start:start + batch_size].to(dev, non_blocking=True), mean, std, resolution)
            y = data.labels[start:start + batch_size].to(dev, non_blocking=True)
            logits = supernet(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == y).sum())
            correct5 += int((top == y[:, None]).any(1).sum())
    n = max(1, len(data))
    return {"accuracy": correct1 / n, "top5": correct5 / n, "loss": loss / n}


def calibrate_and_evaluate(
    supernet: Supernet, arch: Arch, calib: ImageSet, val: ImageSet, mean, std, config: CalibrationConfig,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """BN-calibrate ``arch`` on the seeded subset, then evaluate it; timings included (on a GPU,
    ``calib_seconds`` waits for the calibration's kernels to finish)."""
    subset = calibration_subset(calib, config)
    dev = _on_device(supernet, device)
    started = time.perf_counter()
    calibrate_bn(supernet, arch, subset.images, mean, std, config.batch_size, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    calibrated = time.perf_counter()
    metrics = evaluate(supernet, arch, val, mean, std, config.eval_batch_size, dev)
    return {**metrics, "calib_images": len(subset), "calib_seconds": calibrated - started,
            "eval_seconds": time.perf_counter() - started}
