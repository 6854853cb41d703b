"""Training configuration: one typed, validated place for every knob and its default."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from raynas.errors import ConfigError
from raynas.sampling import SAMPLINGS
from raynas.supernet.mobilenet import BN_LAYOUTS

MODES = ("bn_only", "full")
SCHEDULES = ("cosine", "exp_decay_const", "constant")
CLASSIFIER_MODES = ("frozen", "trainable")
GRAD_SYNCS = ("step", "member")
AMPS = ("off", "bf16")


def amp_hint(value: object) -> str:
    """What to say when an ``amp`` value read from YAML is a bool: YAML reads a bare off as false."""
    return ' (quote "off": YAML reads off as false)' if isinstance(value, bool) else ""


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
    grad_sync:   with several workers, "step" all-reduces the summed gradients once per
                 optimiser step; "member" once per child, as before (same update, more bytes;
                 kept to measure the difference).
    cutout:      side in pixels of the square that Cutout sets to the data's mean in every
                 training image (0: off); acts whether or not ``augment`` is on.
    amp:         "bf16" runs the forwards and losses under bfloat16 autocast; "off" in float32.
    channels_last: model and inputs in ``torch.channels_last`` memory format (faster convs on
                 GPUs with tensor cores; the same results up to rounding).
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
    cutout: int = 0
    seed: int = 0
    train_images: int | None = None
    log_every_epoch: bool = True
    grad_sync: str = "step"
    amp: str = "off"
    channels_last: bool = False

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _typed(field.name, getattr(self, field.name), str(field.type)))
        _check_choice("mode", self.mode, MODES)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("classifier", self.classifier, CLASSIFIER_MODES)
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("bn_layout", self.bn_layout, tuple(BN_LAYOUTS))
        _check_choice("grad_sync", self.grad_sync, GRAD_SYNCS)
        _check_choice("amp", self.amp, AMPS)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_random", "cutout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
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


_EXPECTED = {"int": "an int", "float": "a number", "bool": "true or false", "str": "a string", "None": "null"}


def _typed(name: str, value: Any, annotation: str) -> Any:
    """``value`` as the field's type (numpy scalars become Python ones), or a ``ConfigError``.

    ``annotation`` is the field's type as written ("int", "float", "int | None", ...). An int is
    a valid float; a bool is neither an int nor a float here, though Python treats it as one.
    """
    allowed = [part.strip() for part in annotation.split("|")]
    if value is None and "None" in allowed:
        return None
    if not isinstance(value, bool):
        if "int" in allowed and isinstance(value, numbers.Integral):
            return int(value)
        if "float" in allowed and isinstance(value, numbers.Real):
            return float(value)
        if "str" in allowed and isinstance(value, str):
            return value
    elif "bool" in allowed:
        return bool(value)
    expected = " or ".join(_EXPECTED[part] for part in allowed)
    hint = ""
    if isinstance(value, str) and "float" in allowed:
        try:
            float(value)
            hint = " (YAML reads a number like 1e-3 as text: write 1.0e-3)"
        except ValueError:
            pass
    raise ConfigError(f"training config key {name!r} must be {expected}, got {value!r} ({type(value).__name__}){hint}")


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name} must be one of {list(valid)}, got {value!r}")


# --- the BigNAS full-mode recipe -----------------------------------------------------------
BIGNAS_LR = 0.4
"""SGD learning rate of ``bignas_recipe`` for short CPU runs (batch 64). Measured on tiny/digits,
4 epochs, stage skip off, one seed: max-child val accuracy 0.53 at lr 0.1, 0.91 at 0.4, 0.87 at 1.0."""
BIGNAS_DECAY_RATE = 0.97
BIGNAS_FINAL_LR_FRACTION = 0.05
BIGNAS_FLOOR_AT = 2 / 3
"""Fraction of the post-warmup run at which the decay reaches its constant ending."""
BIGNAS_WARMUP_FRACTION = 0.05
BIGNAS_MAX_WARMUP_EPOCHS = 5.0


def bignas_recipe(epochs: int, lr: float | None = None, **overrides: Any) -> TrainConfig:
    """BigNAS's full-mode training recipe (Yu et al., ECCV 2020, Sec. 3.1), scaled to ``epochs``.

    What the paper prescribes, and how each choice is kept here:

    - **Sandwich rule with inplace distillation**: the largest child on the labels, the
      smallest and 2 random children on its soft labels (``sampling="sandwich"``,
      ``num_random=2``, ``kd_temperature=1``).
    - **Everything trains** (``mode="full"``); the last BN gamma of every residual branch starts
      at 0 (``train.modes.zero_init_residual_gamma``, applied by the training loop in full mode).
      The paper's second initialisation fix, a skip connection at each stage transition, is a
      property of the network, so it lives in the space: pass ``with_stage_skip(space)``
      (``raynas.supernet.mobilenet``) or a space file with ``stage_skip: true``.
    - **Exponential decay with a constant ending** after a linear warmup
      (``schedule="exp_decay_const"``): the rate decays by 0.97 per ``decay_epochs`` and stops
      at 5% of its initial value. With EfficientNet-style constants (0.97 every 2.4 epochs)
      over an ImageNet run of about 350 epochs the floor comes about two thirds of the way
      through; a short run keeps that shape, so ``decay_epochs`` is chosen to reach the floor
      at 2/3 of the post-warmup epochs. Warmup is 5% of the run, at most 5 epochs.
    - **Regularisation on the largest child only**: weight decay 1e-5 on conv and linear
      weights, added once per step, which is the largest child's share (BN and biases get
      none); dropout is the space's ``dropout`` key (tiny: 0, mbv3_cifar: 0.1) and
      ``sandwich_step`` switches it off for every child but the largest. No label smoothing.
    - **Shared BN** (``bn_layout="shared"``): top-n BN shared by every kernel and expand
      choice, as in BigNAS; children are BN-calibrated before evaluation.
    - **Optimiser**: SGD with Nesterov momentum 0.9 at batch 64, lr 0.4 unless ``lr`` is
      given (``BIGNAS_LR``: the paper's rates are for ImageNet-sized batches and hundreds of
      epochs and do not transfer to a few CPU epochs, so this one is measured). Gradient-norm
      clipping at 5 guards short runs against a bad first step (not in the paper).

    ``overrides`` replace any field (unknown names raise ``ConfigError``), for example
    ``train_images=256`` or ``batch_size=128``.
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    warmup = min(BIGNAS_MAX_WARMUP_EPOCHS, BIGNAS_WARMUP_FRACTION * epochs)
    steps_to_floor = math.log(BIGNAS_FINAL_LR_FRACTION) / math.log(BIGNAS_DECAY_RATE)
    values: dict[str, Any] = {
        "mode": "full", "epochs": epochs, "batch_size": 64, "lr": BIGNAS_LR if lr is None else lr,
        "momentum": 0.9, "nesterov": True, "weight_decay": 1e-5, "label_smoothing": 0.0,
        "warmup_epochs": warmup, "schedule": "exp_decay_const", "decay_rate": BIGNAS_DECAY_RATE,
        "decay_epochs": BIGNAS_FLOOR_AT * (epochs - warmup) / steps_to_floor,
        "final_lr_fraction": BIGNAS_FINAL_LR_FRACTION, "grad_clip": 5.0,
        "sampling": "sandwich", "num_random": 2, "kd_temperature": 1.0, "bn_layout": "shared",
    }
    return TrainConfig.from_dict({**values, **overrides})
