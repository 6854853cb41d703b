"""BPE spaces: the proxy hyper-parameters of budgeted performance estimation, read from YAML.

Budgeted performance estimation (Zheng et al., "Rethinking Performance Estimation in Neural
Architecture Search", CVPR 2020) searches the cheap proxy that ranks architectures (epochs,
batch size, resolution, channels, data fraction, ...) for the best rank correlation with the
true ranking. A BPE file names the target space, the data, the estimator that scores the
reference architectures, and a list of choices per proxy hyper-parameter::

    name: tiny_bpe
    target_space: tiny            # shipped name, or a .yaml path relative to this file
    data: digits
    estimator: auto               # auto | bn_score | calibrated_accuracy
    reference_archs: 6            # optional: a count, or a list of canonical keys
    seed: 0
    hyperparameters:
      epochs: [1, 2]
      batch_size: [64, 128]
      data_fraction: [0.5, 1.0]
      resolution: [native]        # ints >= 4 and/or `native`
      width_multiplier: [1.0]
      mode: [bn_only]
      sandwich_size: [4]
      calib_images: [100]
      lr: [0.5]
    train: {classifier: trainable}    # optional: fixed TrainConfig keys
    mip: {rounds: 2, trials_per_round: 3, max_trials: null, max_seconds: null, cost_weight: 0.0, sampler: tpe}

A hyper-parameter left out is fixed at its default (``DEFAULTS``); one with a single choice is
fixed from the start. Only hyper-parameters with two or more choices are searched and pruned.

``reference_archs`` given as a list of keys restricts the reference table to those rows (each
must be in it); given as a count, it says how many architectures ``reference_arch_list``
samples for ``make_reference``, and trials rank a seeded sample of that many rows of a larger
reference table (``mip.search_reference``). Otherwise every row of the reference table is used.

``proxy: standalone`` makes a trial the paper's: every reference architecture of an nb201
space is trained on its own under the setting and ranked by its val top-1
(``raynas.bpe.standalone``); its hyper-parameters are ``STANDALONE_HYPERPARAMETERS`` (channels,
cells per stage, resolution, epochs, batch size, lr, data fraction, weight decay, augment,
cutout, amp). ``rank_by: tse`` (or ``tse_e``) ranks by the training speed instead
(``raynas.train.speed``); ``accuracy``, the val top-1, is the default.

**Proxy transforms of the space.** A space's widths and resolutions live in its YAML, so the
``width_multiplier`` and ``resolution`` proxies rewrite the space definition (``proxy_space``):

- ``width_multiplier m`` maps every width choice ``w`` (stem, stage and head widths, the head's
  ``mix_width``; NAS-Bench-201's ``channels``) to ``max(1, floor(w * m + 0.5))``; the scaled
  choices are deduplicated and stay increasing. A reference architecture maps each width to its
  scaled value (``proxy_arch``), so two widths that collapse to one value map to the same child.
- ``resolution r`` trains and scores every child at ``r`` x ``r``: a MobileNet space gets the one
  resolution choice ``[r]`` and each reference architecture's resolution maps to ``r``;
  NAS-Bench-201 gets ``resolution: r``. ``native`` keeps the space's own resolutions and each
  architecture keeps its own.

Depth, kernel, expand and op choices are never changed, so every reference architecture has
exactly one image in the proxy space.

**Estimator and mode.** The BN indicator ranks BN-only supernets (BN-NAS); after full training
the gammas mix scale with the conv weights. ``estimator: bn_score`` therefore requires
``mode: [bn_only]`` (anything else is a load error); ``calibrated_accuracy`` works with both
modes; ``auto`` (the default) picks per trial: ``bn_score`` for ``bn_only`` trials and
``calibrated_accuracy`` for ``full`` trials (``estimator_for``). ``calib_images`` only acts when
a trial is scored by calibrated accuracy.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raynas.errors import ArchError, ConfigError, SpaceError
from raynas.search.samplers import SAMPLERS
from raynas.space import Arch, SearchSpace, family, known_families, load_space, space_from_dict
from raynas.space._family import family_part
from raynas.space.reader import Node
from raynas.train.config import AMPS, MODES, TrainConfig, amp_hint
from raynas.train.speed import check_rank_by

NATIVE = "native"
"""The ``resolution`` choice that keeps the space's own resolutions."""

HYPERPARAMETERS: dict[str, str] = {
    "epochs": "proxy training epochs, integers >= 1",
    "batch_size": "training batch size, integers >= 1",
    "resolution": "input resolution: integers >= 4, or 'native' (the space's own resolutions)",
    "width_multiplier": "scales every width choice of the space, numbers > 0",
    "data_fraction": "fraction of the training split used, numbers in (0, 1]",
    "mode": "supernet training mode: bn_only | full",
    "sandwich_size": "children per training step (sandwich: largest + smallest + random; uniform: all random), "
                     "integers >= 2",
    "calib_images": "BN calibration images for calibrated_accuracy, integers >= 1",
    "lr": "learning rate, numbers > 0",
}
"""Every proxy hyper-parameter, in the order used for columns and tie-breaks."""

DEFAULTS: dict[str, Any] = {
    "epochs": TrainConfig.epochs, "batch_size": TrainConfig.batch_size, "resolution": NATIVE,
    "width_multiplier": 1.0, "data_fraction": 1.0, "mode": TrainConfig.mode,
    "sandwich_size": 2 + TrainConfig.num_random, "calib_images": 500, "lr": TrainConfig.lr,
}
"""The value of a hyper-parameter the file leaves out (TrainConfig's defaults where it has one)."""

STANDALONE_HYPERPARAMETERS: dict[str, str] = {
    "channels": "channels of the first stage (NAS-Bench-201: 16), integers >= 1",
    "cells_per_stage": "cells per stage (NAS-Bench-201: 5), integers >= 1",
    "resolution": "images are resized once to this size, integers >= 4",
    "epochs": "training epochs of each architecture, integers >= 1",
    "batch_size": "training batch size, integers >= 1",
    "lr": "learning rate, numbers > 0",
    "data_fraction": "fraction of the training split used, numbers in (0, 1]",
    "weight_decay": "weight decay, numbers >= 0",
    "augment": "random crop and flip, true and/or false",
    "cutout": "side of the Cutout square in px (0: off), integers >= 0",
    "amp": "bfloat16 autocast, \"off\" and/or \"bf16\"",
}
"""The hyper-parameters of a standalone proxy (``proxy: standalone``): ``ProxySetting``'s keys but the seed."""

PROXY_KINDS = ("supernet", "standalone")
"""What a BPE trial trains: one proxy supernet scored by an estimator, or every reference
architecture on its own, ranked by its validation top-1 (the paper's BPE)."""
METRICS = ("kendall_tau", "spearman_rho")
"""The rank correlation a BPE trial is judged by (the paper: Spearman)."""
ESTIMATORS = ("auto", "bn_score", "calibrated_accuracy")
TOP_KEYS = ("name", "description", "target_space", "data", "estimator", "reference_archs", "seed",
            "proxy", "rank_by", "hyperparameters", "train", "mip")
SET_BY_HYPERPARAMETERS = ("mode", "epochs", "batch_size", "lr", "num_random", "train_images", "seed",
                          "log_every_epoch")
"""TrainConfig keys that a BPE trial sets itself, so the ``train:`` section may not."""

Setting = dict[str, Any]


FIX_AT_CHOICES = ("cheapest", "best")
"""Where MIP fixes a pruned hyper-parameter (see ``raynas.bpe.mip``)."""


@dataclass(frozen=True)
class MIPConfig:
    """The budget and objective of minimum importance pruning.

    rounds:           at most this many rounds (one hyper-parameter is fixed after each round).
    trials_per_round: BPE trials per round, run in parallel as Ray Tune trials.
    max_trials:       stop before a round once this many trials ran (None: no cap).
    max_seconds:      stop before a round once this much wall time passed (None: no cap).
    cost_weight:      lambda of the objective tau - lambda * cost / max cost (0: tau alone).
    sampler:          Optuna sampler name (``raynas.search.samplers.SAMPLERS``).
    fix_at:           "cheapest" (the paper: a pruned hyper-parameter is fixed at its tried value
                      of lowest mean cost) or "best" (its value of best mean objective).
    metric:           the rank correlation that is the objective: "kendall_tau" or
                      "spearman_rho" (the paper's).
    """

    rounds: int = 3
    trials_per_round: int = 4
    max_trials: int | None = None
    max_seconds: float | None = None
    cost_weight: float = 0.0
    sampler: str = "tpe"
    fix_at: str = "cheapest"
    metric: str = "kendall_tau"

    def __post_init__(self) -> None:
        for name in ("rounds", "trials_per_round", "max_trials"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.max_seconds is not None and not (_is_number(self.max_seconds) and self.max_seconds > 0):
            raise ConfigError(f"max_seconds must be a number > 0, got {self.max_seconds!r}")
        if not (_is_number(self.cost_weight) and math.isfinite(self.cost_weight) and self.cost_weight >= 0):
            raise ConfigError(f"cost_weight must be a finite number >= 0, got {self.cost_weight!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; valid samplers: {sorted(SAMPLERS)}")
        if self.fix_at not in FIX_AT_CHOICES:
            raise ConfigError(f"fix_at must be one of {list(FIX_AT_CHOICES)}, got {self.fix_at!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {list(METRICS)}, got {self.metric!r}")

    @property
    def column(self) -> str:
        """The trial row column holding the metric (``tau`` or ``rho``)."""
        return "tau" if self.metric == "kendall_tau" else "rho"

    def replace(self, **changes: Any) -> MIPConfig:
        """A copy with the given fields changed; None values leave a field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class BPESpace:
    """A parsed BPE file: target space, data, estimator, hyper-parameter choices and MIP budget."""

    name: str
    target_space: SearchSpace
    data: str
    estimator: str
    choices: dict[str, tuple[Any, ...]]
    reference_archs: tuple[str, ...] | int | None = None
    seed: int = 0
    train: dict[str, Any] = field(default_factory=dict)
    mip: MIPConfig = field(default_factory=MIPConfig)
    source: str = "<memory>"
    proxy: str = "supernet"
    rank_by: str = "accuracy"
    """What a standalone trial ranks its architectures by (``raynas.train.speed.RANK_BY``)."""

    @property
    def names(self) -> tuple[str, ...]:
        """This file's hyper-parameters, in column and tie-break order."""
        return tuple(KIND_HYPERPARAMETERS[self.proxy])

    @property
    def free(self) -> tuple[str, ...]:
        """Hyper-parameters with two or more choices: the ones MIP searches and prunes."""
        return tuple(name for name, values in self.choices.items() if len(values) > 1)

    @property
    def fixed(self) -> Setting:
        """Hyper-parameters with a single choice, at that choice."""
        return {name: values[0] for name, values in self.choices.items() if len(values) == 1}

    def base_config(self) -> TrainConfig:
        """The TrainConfig every trial starts from: the ``train:`` keys, the seed, no progress lines."""
        return TrainConfig.from_dict({**self.train, "seed": self.seed, "log_every_epoch": False})

    def estimator_for(self, mode: str | None) -> str:
        """The score that ranks the reference set after training in ``mode``."""
        if self.proxy == "standalone":
            return score_column(self.rank_by)
        if self.estimator != "auto":
            return self.estimator
        return "bn_score" if mode == "bn_only" else "calibrated_accuracy"

    def reference_arch_list(self, count: int | None = None) -> list[Arch]:
        """The reference architectures this file names, or a seeded sample of ``count`` of them.

        A count (from the file or the argument) gives the smallest and largest child plus
        distinct seeded random children, so the reference spans the space.
        """
        space = self.target_space
        if count is None and isinstance(self.reference_archs, tuple):
            return [space.arch(key) for key in self.reference_archs]
        wanted = count if count is not None else self.reference_archs
        if not isinstance(wanted, int) or wanted < 2:
            raise ConfigError(f"{self.source}: reference_archs must be a count >= 2 or a list of keys to sample "
                              f"reference architectures, got {wanted!r}")
        return sample_reference_archs(space, wanted, self.seed)


def sample_reference_archs(space: SearchSpace, count: int, seed: int = 0) -> list[Arch]:
    """``space.min()``, ``space.max()`` and ``count - 2`` distinct seeded random children."""
    rng = random.Random(f"bpe-reference:{seed}")
    archs = list(dict.fromkeys([space.min(), space.max()]))
    for _ in range(1000 * count):
        if len(archs) >= count:
            break
        candidate = space.sample(rng)
        if candidate not in archs:
            archs.append(candidate)
    if len(archs) < count:
        raise ConfigError(f"space {space.name!r} has fewer than {count} distinct architectures")
    return archs[:count]


# --- loading ----------------------------------------------------------------------------------
def load_bpe_space(path: str | os.PathLike[str]) -> BPESpace:
    """Parse and validate a BPE file; errors name the file, the key path and the rule."""
    file = Path(path)
    if not file.is_file():
        raise SpaceError(f"{file}: BPE file not found")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise SpaceError(f"{file.name}: malformed YAML: {err}") from err
    return bpe_space_from_dict(data, source=file.name, folder=file.parent, default_name=file.stem)


def bpe_space_from_dict(data: object, source: str = "<dict>", folder: Path | None = None,
                        default_name: str = "bpe") -> BPESpace:
    """Build a BPE space from a parsed mapping; ``folder`` resolves a relative ``target_space`` path."""
    root = Node(data, source)
    root.mapping(["target_space", "hyperparameters"], TOP_KEYS)
    target = _target_space(root.child("target_space"), folder)
    proxy = root.get("proxy", "supernet").one_of(PROXY_KINDS)
    choices = _hyperparameters(root.child("hyperparameters"), proxy)
    if proxy == "standalone":
        _check_standalone(root, target)
    estimator = _estimator(root.get("estimator", "auto"), choices.get("mode", ("full",)))
    return BPESpace(
        name=str(root.get("name", default_name).value),
        target_space=target,
        data=_string(root.get("data", "digits")),
        estimator=estimator,
        choices=choices,
        reference_archs=_reference_archs(root.get("reference_archs"), target),
        seed=root.get("seed", 0).integer(minimum=0),
        train=_train(root.get("train", {})),
        mip=_mip(root.get("mip", {})),
        source=source,
        proxy=proxy,
        rank_by=_rank_by(root, proxy),
    )


def _check_standalone(root: Node, target: SearchSpace) -> None:
    """A standalone proxy rewrites the family's skeleton (``Family.proxy_child``) and ranks by val
    top-1 or its training speed (``rank_by``): no estimator, no train:."""
    if family(target.family).proxy_child is None:
        raise root.child("proxy").error(f"standalone proxies support {standalone_families()} spaces for now; "
                                        f"target_space {target.name!r} is family {target.family!r}")
    for key in ("estimator", "train"):
        if key in root.value:
            raise root.child(key).error(f"a standalone proxy ranks by each architecture's val top-1 or training "
                                        f"speed (rank_by:) and is trained by its hyper-parameters alone; "
                                        f"remove {key}:")


def _rank_by(root: Node, proxy: str) -> str:
    """``rank_by`` of a standalone proxy (default ``accuracy``); a ConfigError naming the file,
    like ``check_rank_by``'s for the same value on the command line."""
    if proxy != "standalone" and "rank_by" in root.value:
        raise ConfigError(f"{root.source}: rank_by ranks the architectures of a standalone proxy "
                          "(proxy: standalone); a supernet proxy is scored by its estimator:")
    try:
        return check_rank_by(root.get("rank_by", "accuracy").value)
    except ConfigError as err:
        raise ConfigError(f"{root.source}: {err}") from err


def score_column(rank_by: str) -> str:
    """The proxy row column (``raynas.bpe.proxy.PROXY_SCHEMA``) that ``rank_by`` ranks by; also
    the ``estimator`` a standalone trial records."""
    return "proxy_accuracy" if rank_by == "accuracy" else rank_by


def _string(node: Node) -> str:
    if not isinstance(node.value, str) or not node.value:
        raise node.error(f"must be a non-empty string, got {node.value!r}")
    return node.value


def _target_space(node: Node, folder: Path | None) -> SearchSpace:
    name = _string(node)
    path = Path(name)
    if folder is not None and path.suffix in (".yaml", ".yml") and not path.is_absolute():
        path = folder / path
    try:
        return load_space(path if path.suffix in (".yaml", ".yml") else name)
    except SpaceError as err:
        raise node.error(str(err)) from err


def _hyperparameters(node: Node, proxy: str = "supernet") -> dict[str, tuple[Any, ...]]:
    if not isinstance(node.value, dict):
        raise node.error(f"must be a mapping of hyper-parameter -> list of choices, got {type(node.value).__name__}")
    names, parsers, defaults = KIND_HYPERPARAMETERS[proxy], KIND_PARSERS[proxy], _defaults(proxy)
    unknown = sorted(str(k) for k in node.value if k not in names)
    if unknown:
        raise node.error(f"unknown hyper-parameter(s) {unknown} for a {proxy} proxy; valid hyper-parameters: "
                         f"{list(names)}")
    return {name: parsers[name](node.child(name)) if name in node.value else (defaults[name],) for name in names}


def _defaults(proxy: str) -> dict[str, Any]:
    if proxy == "supernet":
        return DEFAULTS
    from raynas.bpe.proxy_setting import (
        ProxySetting,  # it maps supernet results with this module's helpers
    )

    return ProxySetting().to_dict()


def _booleans(node: Node) -> tuple[bool, ...]:
    raw = _as_list(node)
    if not all(isinstance(v, bool) for v in raw) or len(set(raw)) != len(raw):
        raise node.error(f"choices must be distinct true/false values, got {raw}")
    return tuple(raw)


def _amps(node: Node) -> tuple[str, ...]:
    raw = _as_list(node)
    bad = [v for v in raw if not isinstance(v, str) or v not in AMPS]
    if bad:
        raise node.error(f"every choice must be one of {list(AMPS)}, got {raw}{amp_hint(bad[0])}")
    return node.choices(kind="str")


def _as_list(node: Node) -> list[Any]:
    raw = node.value if isinstance(node.value, list) else [node.value]
    if not raw:
        raise node.error("must be a non-empty list of choices, got []")
    return raw


def _numbers(node: Node, low: float, high: float = math.inf, low_open: bool = True) -> tuple[float, ...]:
    """Strictly increasing numbers in (low, high] (or [low, high] when ``low_open`` is False)."""
    raw = _as_list(node)
    if not all(_is_number(v) and math.isfinite(v) for v in raw):
        raise node.error(f"every choice must be a finite number, got {raw}")
    bad = [v for v in raw if (v <= low if low_open else v < low) or v > high]
    if bad:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise node.error(f"every choice must be in {interval}, got {bad}")
    if any(b <= a for a, b in zip(raw, raw[1:])):
        raise node.error(f"choices must be strictly increasing, got {raw}")
    return tuple(float(v) for v in raw)


def _resolutions(node: Node) -> tuple[Any, ...]:
    raw = _as_list(node)
    sizes = [v for v in raw if v != NATIVE]
    if raw.count(NATIVE) > 1:
        raise node.error(f"'{NATIVE}' may appear once, got {raw}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
        raise node.error(f"every choice must be an integer >= 4 or '{NATIVE}', got {raw}")
    if any(v < 4 for v in sizes):
        raise node.error(f"every resolution must be >= 4, got {raw}")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise node.error(f"integer resolutions must be strictly increasing, got {raw}")
    return tuple(raw)


def _modes(node: Node) -> tuple[str, ...]:
    values = node.choices(kind="str")
    unknown = [v for v in values if v not in MODES]
    if unknown:
        raise node.error(f"unknown mode(s) {unknown}; valid modes: {list(MODES)}")
    return values


PARSERS = {
    "epochs": lambda n: n.choices(minimum=1),
    "batch_size": lambda n: n.choices(minimum=1),
    "resolution": _resolutions,
    "width_multiplier": lambda n: _numbers(n, 0.0),
    "data_fraction": lambda n: _numbers(n, 0.0, 1.0),
    "mode": _modes,
    "sandwich_size": lambda n: n.choices(minimum=2),
    "calib_images": lambda n: n.choices(minimum=1),
    "lr": lambda n: _numbers(n, 0.0),
}

STANDALONE_PARSERS = {
    "channels": lambda n: n.choices(minimum=1),
    "cells_per_stage": lambda n: n.choices(minimum=1),
    "resolution": lambda n: n.choices(minimum=4),
    "epochs": lambda n: n.choices(minimum=1),
    "batch_size": lambda n: n.choices(minimum=1),
    "lr": lambda n: _numbers(n, 0.0),
    "data_fraction": lambda n: _numbers(n, 0.0, 1.0),
    "weight_decay": lambda n: _numbers(n, 0.0, low_open=False),
    "augment": _booleans,
    "cutout": lambda n: n.choices(minimum=0),
    "amp": _amps,
}
KIND_HYPERPARAMETERS = {"supernet": HYPERPARAMETERS, "standalone": STANDALONE_HYPERPARAMETERS}
KIND_PARSERS = {"supernet": PARSERS, "standalone": STANDALONE_PARSERS}


def _estimator(node: Node, modes: tuple[str, ...]) -> str:
    value = node.one_of(ESTIMATORS)
    if value == "bn_score" and set(modes) != {"bn_only"}:
        raise node.error(
            f"bn_score ranks BN-only supernets, so it needs hyperparameters.mode to be [bn_only], got {list(modes)}; "
            "use estimator: auto to score full-mode trials by calibrated accuracy"
        )
    return value


def _reference_archs(node: Node, space: SearchSpace) -> tuple[str, ...] | int | None:
    if node.value is None:
        return None
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.integer(minimum=2)
    if not isinstance(node.value, list) or len(node.value) < 2:
        raise node.error(f"must be a count >= 2 or a list of at least 2 architecture keys, got {node.value!r}")
    keys = []
    for i, value in enumerate(node.value):
        item = node.child(i)
        try:
            keys.append(space.key(space.arch(_string(item))))
        except ArchError as err:
            raise item.error(f"not an architecture of space {space.name!r}: {err}") from err
    if len(set(keys)) != len(keys):
        raise node.error(f"architectures must be distinct, got duplicates {sorted({k for k in keys if keys.count(k) > 1})}")
    return tuple(keys)


def _train(node: Node) -> dict[str, Any]:
    if not isinstance(node.value, dict):
        raise node.error(f"must be a mapping of TrainConfig keys, got {type(node.value).__name__}")
    owned = sorted(k for k in node.value if k in SET_BY_HYPERPARAMETERS)
    if owned:
        raise node.error(f"key(s) {owned} are set by the BPE hyper-parameters and the seed; remove them from train:")
    try:
        TrainConfig.from_dict(dict(node.value))
    except ConfigError as err:
        raise node.error(str(err)) from err
    return dict(node.value)


def _mip(node: Node) -> MIPConfig:
    fields = [f.name for f in dataclasses.fields(MIPConfig)]
    node.mapping([], fields)
    try:
        return MIPConfig(**node.value)
    except (ConfigError, TypeError) as err:
        raise node.error(str(err)) from err


# --- proxy transforms of the space ------------------------------------------------------------
def scale_width(width: int, multiplier: float) -> int:
    """A width under ``width_multiplier``: rounded half up, at least 1."""
    return max(1, math.floor(width * multiplier + 0.5))


def _scaled(choices: Any, multiplier: float) -> list[int]:
    values = choices if isinstance(choices, list) else [choices]
    return sorted({scale_width(int(w), multiplier) for w in values})


def mobilenet_proxy_definition(definition: dict[str, Any], multiplier: float, resolution: Any) -> dict[str, Any]:
    """``Family.proxy_space`` of mobilenet: every width choice scaled, resolution replaced."""
    out = {**definition, "stem": dict(definition["stem"]), "head": dict(definition["head"]),
           "stages": [dict(stage) for stage in definition["stages"]]}
    for part in [out["stem"], out["head"], *out["stages"]]:
        part["width"] = _scaled(part["width"], multiplier)
    if out["head"].get("mix_width") is not None:
        out["head"]["mix_width"] = scale_width(int(out["head"]["mix_width"]), multiplier)
    if resolution != NATIVE:
        out["resolution"] = [int(resolution)]
    return out


def nb201_proxy_definition(definition: dict[str, Any], multiplier: float, resolution: Any) -> dict[str, Any]:
    """``Family.proxy_space`` of nb201: channels scaled, resolution replaced."""
    out = {**definition, "channels": scale_width(int(definition.get("channels", 16)), multiplier)}
    if resolution != NATIVE:
        out["resolution"] = int(resolution)
    return out


def nb201_child_definition(definition: dict[str, Any], channels: int, cells_per_stage: int,
                           resolution: int) -> dict[str, Any]:
    """``Family.proxy_child`` of nb201: the skeleton at the standalone proxy's size, the cell unchanged."""
    return {**definition, "channels": channels, "cells_per_stage": cells_per_stage, "resolution": resolution}


def standalone_families() -> str:
    """The families a standalone proxy supports (those with ``Family.proxy_child``), for messages."""
    return ", ".join(known_families("proxy_child"))


def proxy_space(space: SearchSpace, width_multiplier: float = 1.0, resolution: Any = NATIVE) -> SearchSpace:
    """The space under the width and resolution proxies (the space itself when both are neutral)."""
    if width_multiplier == 1.0 and resolution == NATIVE:
        return space
    rewrite = family_part(space.family, "proxy_space", "width/resolution proxy")
    definition = rewrite(space.definition, width_multiplier, resolution)
    name = f"{space.name}@w{width_multiplier:g}-r{resolution}"
    return space_from_dict({**definition, "name": name}, source=f"{space.source} (proxy)", default_name=name)


def proxy_arch(space: SearchSpace, proxy: SearchSpace, arch: Arch, width_multiplier: float = 1.0,
               resolution: Any = NATIVE) -> Arch:
    """``arch`` of ``space`` mapped into ``proxy``: widths scaled, resolution replaced, the rest kept."""
    values: dict[str, Any] = {}
    for name, value in arch.items():
        kind = space.dim(name).kind
        if kind == "width":
            value = scale_width(int(value), width_multiplier)
        elif kind == "resolution" and resolution != NATIVE:
            value = int(resolution)
        values[name] = value
    return proxy.arch(values)


def setting_key(setting: Mapping[str, Any], names: Sequence[str] = tuple(HYPERPARAMETERS)) -> str:
    """A readable one-line form of a setting: ``epochs=2 batch_size=64 ...``."""
    return " ".join(f"{name}={setting[name]}" for name in names if name in setting)
