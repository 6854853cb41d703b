"""Training configuration: one typed, validated place for every knob and its default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raynas.errors import ConfigError
from raynas.supernet.mobilenet import BN_LAYOUTS

MODES = ("bn_only", "full")
SCHEDULES = ("cosine", "exp_decay_const", "constant")
CLASSIFIER_MODES = ("frozen", "trainable")
SAMPLINGS = ("sandwich", "uniform")


@dataclass(frozen=True)
class TrainConfig:
    """How a supernet (or one standalone child) is trained.

    mode:        "bn_only" (BN-NAS: only BN affine parameters learn) or "full" (BigNAS).
    sampling:    "sandwich" (BigNAS: largest on labels, smallest and ``num_random`` random
                 children distilled from it) or "uniform" (SPOS, as BN-NAS trains its
                 supernet: ``num_random`` random children per step, each on the labels).
    num_random:  random children per step (besides the largest and smallest under "sandwich").
    classifier:  in bn_only mode, "frozen" keeps the linear classifier at its seeded init as
                 BN-NAS does; "trainable" lets it learn too. Full mode always trains it.
    weight_decay applies to conv and linear weights once per step, that is to the largest
                 child only (BigNAS); the other children add no regulariser.
    """

    mode: str = "bn_only"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    decay_rate: float = 0.97
    decay_epochs: float = 1.0
    final_lr_fraction: float = 0.05
    grad_clip: float = 5.0
    sampling: str = "sandwich"
    num_random: int = 2
    kd_temperature: float = 1.0
    label_smoothing: float = 0.0
    classifier: str = "frozen"
    bn_layout: str = "private"
    augment: bool = True
    seed: int = 0
    train_images: int | None = None
    log_every_epoch: bool = True

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("classifier", self.classifier, CLASSIFIER_MODES)
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("bn_layout", self.bn_layout, tuple(BN_LAYOUTS))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_random < 0:
            raise ConfigError(f"num_random must be >= 0, got {self.num_random}")
        if self.sampling == "uniform" and self.num_random < 1:
            raise ConfigError("sampling='uniform' trains only random children: num_random must be >= 1")
        if self.lr <= 0 or self.kd_temperature <= 0:
            raise ConfigError(f"lr and kd_temperature must be > 0, got lr={self.lr}, kd_temperature={self.kd_temperature}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys are rejected with the list of valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ConfigError(f"unknown training config key(s) {unknown}; valid keys: {sorted(valid)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name} must be one of {list(valid)}, got {value!r}")
