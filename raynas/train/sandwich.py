"""The sandwich rule with inplace distillation (BigNAS), as a pure training step.

Each step trains the largest child on the labels, then the smallest child and N random children
on the largest child's detached soft labels (KL divergence at a temperature). All gradients add
up into one optimiser step. Children for step t are drawn from a generator seeded by
(seed, t), so every data-parallel rank samples the same children without shared global state.
Under DDP the gradients are all-reduced once per step, in the last backward (``grad_sync``).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from raynas.errors import TrainingError
from raynas.space import Arch, SearchSpace
from raynas.train.config import TrainConfig

# images (uint8, N C H W), resolution -> model input
InputFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Member:
    """One child of a sandwich step: its role ("max", "min", "random_0", ...) and arch."""

    role: str
    arch: Arch


def sandwich_members(space: SearchSpace, seed: int, step: int, num_random: int, sampling: str = "sandwich") -> list[Member]:
    """The children of step ``step``.

    "sandwich": largest first (it is the teacher), then smallest, then random. "uniform": only
    the random children (single-path uniform sampling, as SPOS and BN-NAS train).
    """
    rng = random.Random(f"{seed}:{step}")
    members = [Member("max", space.max()), Member("min", space.min())] if sampling == "sandwich" else []
    members += [Member(f"random_{i}", space.sample(rng)) for i in range(num_random)]
    return members


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at ``temperature``, scaled by T^2 so gradients keep their size."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean", log_target=True) * t * t


@contextlib.contextmanager
def dropout_only_for(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Dropout applies to the largest child only (BigNAS): switch it off for the others."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    saved = [m.p for m in dropouts]
    if not enabled:
        for m in dropouts:
            m.p = 0.0
    try:
        yield
    finally:
        for m, p in zip(dropouts, saved):
            m.p = p


def sandwich_step(
    model: nn.Module,
    members: Sequence[Member],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    to_input: InputFn,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    step: int,
    key: Callable[[Arch], str] = str,
) -> dict[str, float]:
    """One optimiser step over ``members``; returns each member's loss.

    ``batches`` are micro-batches whose gradients are averaged (one per data-parallel shard when a
    single process reproduces a multi-worker step). The first member is the teacher: it learns
    from the labels, every later member from its soft labels (with ``config.sampling ==
    "uniform"`` every member learns from the labels). A non-finite loss raises
    ``TrainingError`` naming the step and the child, before any weight changes.
    """
    optimizer.zero_grad(set_to_none=True)
    losses = {m.role: 0.0 for m in members}
    scale = 1.0 / len(batches)
    distil = config.sampling == "sandwich"
    passes = len(batches) * len(members)
    for b, (images, labels) in enumerate(batches):
        inputs: dict[int, torch.Tensor] = {}
        teacher: torch.Tensor | None = None
        for m, member in enumerate(members):
            resolution = int(member.arch.get("resolution", images.shape[-1]))
            if resolution not in inputs:
                inputs[resolution] = _memory_format(to_input(images, resolution), config)
            with _sync_scope(model, config, last=b * len(members) + m == passes - 1):
                loss, logits = _member_loss(model, inputs[resolution], member.arch, labels, teacher, config)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"non-finite loss {loss.item()} at step {step} for child {key(member.arch)} ({member.role}); "
                        "the last good checkpoint is kept. Lower the learning rate or check the data."
                    )
                (loss * scale).backward()
            if teacher is None and distil:
                teacher = logits.detach()
            losses[member.role] += loss.item() * scale
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()
    return losses


def _sync_scope(model: nn.Module, config: TrainConfig, last: bool) -> contextlib.AbstractContextManager:
    """Under DDP with ``grad_sync="step"``, skip the all-reduce of every backward but the step's last.

    The gradients of all children add up before the one optimiser step, so a single all-reduce
    of the sum carries the same update as one per child. DDP (torch >= 2.4) also averages, in that
    last pass, parameters that only earlier children used. The forward must run in this scope too.
    """
    if last or config.grad_sync == "member" or not isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def _member_loss(model: nn.Module, inputs: torch.Tensor, arch: Arch, labels: torch.Tensor,
                 teacher: torch.Tensor | None, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A child's loss and logits: on the labels without a teacher, else distilled from its logits."""
    with dropout_only_for(model, teacher is None), _autocast(config, inputs):
        logits = model(inputs, arch)
        if teacher is None:
            return F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing), logits
        return distillation_loss(logits, teacher, config.kd_temperature), logits


def _autocast(config: TrainConfig, inputs: torch.Tensor) -> torch.autocast:
    """bfloat16 autocast on the inputs' device when ``config.amp == "bf16"`` (no loss scaling needed)."""
    return torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=config.amp == "bf16")


def _memory_format(inputs: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return inputs.contiguous(memory_format=torch.channels_last) if config.channels_last else inputs
