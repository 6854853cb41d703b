"""What each training mode trains, how it initialises, and its learning-rate schedule."""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from raynas.supernet import BATCHNORMS
from raynas.train.config import TrainConfig


def is_bn_parameter(module: nn.Module) -> bool:
    return isinstance(module, BATCHNORMS)


def classifier_modules(model: nn.Module) -> set[nn.Module]:
    """The final linear classifier(s): the last ``nn.Linear``-like module of the network."""
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "classifier"):
        return {head.classifier}
    network = getattr(model, "network", model)
    return {cast(nn.Module, network.classifier)} if hasattr(network, "classifier") else set()


def configure_trainable(model: nn.Module, config: TrainConfig) -> list[nn.Parameter]:
    """Set ``requires_grad`` per mode; returns the trainable parameters.

    bn_only: BN gamma and beta only (plus the classifier when config.classifier == "trainable");
    conv and linear weights stay frozen at their seeded init, as in BN-NAS.
    """
    trainable_modules: set[nn.Module] = set()
    if config.mode == "bn_only":
        trainable_modules = {m for m in model.modules() if is_bn_parameter(m)}
        if config.classifier == "trainable":
            trainable_modules |= classifier_modules(model)
    for module in model.modules():
        for param in module.parameters(recurse=False):
            param.requires_grad_(config.mode == "full" or module in trainable_modules)
    return [p for p in model.parameters() if p.requires_grad]


def zero_init_residual_gamma(model: nn.Module) -> int:
    """BigNAS: the last BN gamma of every residual branch starts at zero. Returns how many.

    A residual branch is every block after a stage's first (they keep their input shape), and
    a stage's first block where it has a stage-transition shortcut (``stage_skip`` spaces).
    A first block without one is left alone: it is residual only for children whose widths
    happen to match, and a zero gamma would cut the signal of every other child.
    """
    count = 0
    for stage in getattr(model, "stages", []):
        for j, block in enumerate(stage):
            if j > 0 or getattr(block, "shortcut", None) is not None:
                nn.init.zeros_(block.project.bn.weight)
                count += 1
    return count


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Weight decay on conv/linear weights only; BN parameters and biases get none."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (no_decay if is_bn_parameter(module) or name == "bias" else decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}]
    if decay:
        groups.append({"params": decay, "weight_decay": config.weight_decay})
    return groups


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        parameter_groups(model, config), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
    )


def lr_factor(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``step``: linear warmup, then the schedule."""
    epoch = step / max(1, steps_per_epoch)
    if epoch < config.warmup_epochs:
        return (step + 1) / max(1.0, config.warmup_epochs * steps_per_epoch)
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "exp_decay_const":
        # BigNAS: exponential decay that levels off at a constant ending value.
        decayed = config.decay_rate ** ((epoch - config.warmup_epochs) / config.decay_epochs)
        return max(decayed, config.final_lr_fraction)
    span = max(1e-9, config.epochs - config.warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (epoch - config.warmup_epochs) / span)))


def make_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, config: TrainConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, config))


def same_schedule_so_far(old: TrainConfig, new: TrainConfig, steps: int, steps_per_epoch: int) -> bool:
    """Whether ``new`` prescribes exactly the learning rates ``old`` used for the first ``steps`` steps.

    Then a run trained with ``old`` and continued with ``new`` equals a run trained with ``new``
    throughout (e.g. more epochs on a constant schedule, but not on a cosine one, whose shape
    spans all epochs).
    """
    return all(lr_factor(s, steps_per_epoch, old) == lr_factor(s, steps_per_epoch, new) for s in range(steps))
