"""A proxy setting: the cheap budget under which each architecture is trained on its own.

Zheng et al. (CVPR 2020) rank architectures by training each one standalone under a proxy
(fewer channels and cells, smaller images, few epochs, part of the data) instead of its full
budget. A setting file holds the keys of ``ProxySetting``; left-out keys take the defaults,
which are the paper's released BPE1 setting mapped onto NAS-Bench-201::

    channels: 8            # C: channels of the first stage (NB201: 16)
    cells_per_stage: 2     # N: cells per stage (NB201: 5)
    resolution: 16         # input images are resized once to this size
    epochs: 10
    batch_size: 128
    lr: 0.03
    data_fraction: 1.0     # first fraction of the (seeded) training split
    weight_decay: 3.0e-4
    augment: true          # random crop and flip
    cutout: 0              # side of the Cutout square in px (0: off)
    amp: "off"             # "bf16": forwards and losses under bfloat16 autocast
    seed: 0                # init, batch order, and the train/val split

``load_proxy_setting`` also reads a ``bpe_result.json`` written by ``raynas bpe`` where its
chosen setting maps onto these keys (``from_bpe_result``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raynas.bpe.space import NATIVE, scale_width, standalone_families
from raynas.errors import ConfigError
from raynas.space import SearchSpace, family
from raynas.space.reader import read_yaml
from raynas.train.config import AMPS, amp_hint

SUPERNET_ONLY = ("sandwich_size", "calib_images")
"""BPE hyper-parameters that only act on a supernet; a standalone proxy has nothing to map them to."""


@dataclass(frozen=True)
class ProxySetting:
    """How every architecture is trained standalone under the proxy (defaults: the paper's BPE1).

    The paper's BPE1 is 8 channels, 6 layers, 16 px, 10 epochs, batch 128, lr 0.03. It counts
    layers over the whole network (DARTS style), so 6 layers are 3 stages x 2 cells here.
    Training is SGD with Nesterov momentum 0.9 and a cosine schedule (``TrainConfig``'s).
    """

    channels: int = 8
    cells_per_stage: int = 2
    resolution: int = 16
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.03
    data_fraction: float = 1.0
    weight_decay: float = 3e-4
    augment: bool = True
    cutout: int = 0
    amp: str = "off"
    seed: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _checked(field.name, getattr(self, field.name)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>") -> ProxySetting:
        """Build from a mapping; errors name ``source``, the key and the rule."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: a proxy setting must be a mapping of {list(KEYS)}, "
                              f"got {type(values).__name__}")
        unknown = sorted(str(k) for k in values if k not in KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; valid keys: {list(KEYS)}")
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, source: str = "<replace>", **changes: Any) -> ProxySetting:
        """A copy with the given keys changed (None leaves a key as it is); errors name ``source``."""
        return self.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}}, source)

    def train_images(self, available: int) -> int:
        """Images of a training split of ``available`` that the proxy trains on (at least one batch)."""
        return min(available, max(self.batch_size, round(self.data_fraction * available)))

    def describe(self) -> str:
        """One line: ``channels=8 cells_per_stage=2 ...``."""
        return " ".join(f"{k}={v}" for k, v in self.to_dict().items())


KEYS = tuple(f.name for f in dataclasses.fields(ProxySetting))

_INTEGERS = {"channels": 1, "cells_per_stage": 1, "resolution": 4, "epochs": 1, "batch_size": 1, "cutout": 0,
             "seed": 0}
"""Integer key -> its minimum."""


def _checked(name: str, value: Any) -> Any:
    """``value`` as the key's type (numpy scalars become Python ones), or a ``ConfigError``."""
    got = f"got {value!r} ({type(value).__name__})"
    if name == "augment":
        if not isinstance(value, bool):
            raise ConfigError(f"augment must be true or false, {got}")
        return value
    if name == "amp":
        if value not in AMPS:
            raise ConfigError(f"amp must be one of {list(AMPS)}, {got}{amp_hint(value)}")
        return value
    if name in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < _INTEGERS[name]:
            raise ConfigError(f"{name} must be an integer >= {_INTEGERS[name]}, {got}")
        return int(value)
    rule = {"lr": "> 0", "weight_decay": ">= 0", "data_fraction": "in (0, 1]"}[name]
    number = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    in_range = number and {"lr": value > 0, "weight_decay": value >= 0, "data_fraction": 0 < value <= 1}[name]
    if not in_range:
        hint = " (YAML reads 3e-4 as text: write 3.0e-4)" if isinstance(value, str) and _is_float(value) else ""
        raise ConfigError(f"{name} must be a finite number {rule}, {got}{hint}")
    return float(value)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- loading ----------------------------------------------------------------------------------
def load_proxy_setting(path: str | os.PathLike[str], space: SearchSpace | None = None) -> ProxySetting:
    """A setting from a YAML file of ``ProxySetting`` keys, or from a ``bpe_result.json``.

    A BPE result is recognised by its ``setting`` and ``target_space`` keys; mapping it needs
    the target ``space`` (for its channels, cells and native resolution).
    """
    file = Path(path)
    values = read_yaml(file, ConfigError)  # JSON is YAML
    if isinstance(values, Mapping) and "setting" in values and "target_space" in values:
        if space is None:
            raise ConfigError(f"{file.name}: a BPE result maps onto a proxy setting only with its target space")
        return from_bpe_result(values, space, file.name)
    return ProxySetting.from_dict({} if values is None else values, file.name)


def from_bpe_result(result: Mapping[str, Any], space: SearchSpace, source: str = "bpe_result.json") -> ProxySetting:
    """The standalone counterpart of the setting ``raynas bpe`` chose (``mip.RESULT_FILE``).

    A result of a standalone BPE (``proxy: standalone``) holds a proxy setting already. Otherwise:

    epochs, batch_size, lr and data_fraction carry over; ``width_multiplier`` scales the
    space's channels (``scale_width``) and ``resolution`` replaces its input size (``native``
    keeps it); cells per stage stay the space's, as BPE never changes depth. ``sandwich_size``
    and ``calib_images`` only act on a supernet and are dropped. Only ``mode: full`` maps:
    a BN-only supernet trains BN alone, which a standalone proxy (every weight learns) is not.
    The space's family must have a standalone proxy (``Family.proxy_child``) and its spec the
    ``channels``, ``cells_per_stage`` and ``input_resolution`` that the setting starts from.
    """
    setting = result.get("setting")
    if not isinstance(setting, Mapping):
        raise ConfigError(f"{source}: setting must be a mapping of BPE hyper-parameters, got {setting!r}")
    target = result.get("target_space")
    if target != space.name:
        raise ConfigError(f"{source}: the BPE result is for space {target!r}, not {space.name!r}")
    if family(space.family).proxy_child is None:
        raise ConfigError(f"{source}: proxy settings map onto {standalone_families()} spaces for now; "
                          f"{space.name!r} is family {space.family!r}")
    if result.get("proxy") == "standalone":  # already a standalone setting: taken as it is, with its seed
        seed = result.get("seed", setting.get("seed", 0))
        return ProxySetting.from_dict({**setting, "seed": seed}, source)
    if setting.get("mode") != "full":
        raise ConfigError(f"{source}: setting.mode is {setting.get('mode')!r}; only 'full' maps onto a standalone "
                          "proxy (a bn_only supernet trains BN alone, a standalone proxy trains every weight)")
    missing = [k for k in ("epochs", "batch_size", "lr", "data_fraction", "width_multiplier", "resolution")
               if k not in setting]
    if missing:
        raise ConfigError(f"{source}: setting lacks key(s) {missing}; is it a bpe_result.json of `raynas bpe`?")
    spec = space.spec
    resolution = setting["resolution"]
    values = {
        "channels": scale_width(int(spec.channels), float(setting["width_multiplier"])),  # type: ignore[attr-defined]
        "cells_per_stage": spec.cells_per_stage,  # type: ignore[attr-defined]
        "resolution": spec.input_resolution if resolution == NATIVE else resolution,  # type: ignore[attr-defined]
        **{k: setting[k] for k in ("epochs", "batch_size", "lr", "data_fraction")},
    }
    return ProxySetting.from_dict(values, source)

