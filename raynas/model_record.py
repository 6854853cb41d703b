"""One typed description of a model, the same on every boundary it crosses.

A ``ModelRecord`` is what the Ray Train loop config, a checkpoint's ``meta.json`` and the
evaluator actors carry instead of hand-shaped dicts: the search space (as data), the data it
was trained on (classes, channels, normalisation) and the BN layout. It is torch-free, so a
driver that only plans can read it; ``build`` imports the torch builder only when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from raynas.errors import ConfigError
from raynas.space import SearchSpace, space_from_dict

if TYPE_CHECKING:
    from raynas.supernet import Supernet


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data: classes, channels, normalisation."""

    spec: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean": list(self.mean), "std": list(self.std)}

    def named_not_located(self) -> DataInfo:
        """This description with the dataset's folder named, not located (``imagefolder:/home/u/cifar``
        -> ``imagefolder:cifar``): what a shipped model records, so that it carries no host path."""
        kind, sep, root = self.spec.partition(":")
        return replace(self, spec=f"{kind}:{PurePath(root).name}") if sep and root else self

    @classmethod
    def of(cls, data: Any) -> DataInfo:
        """The description of loaded ``DataSplits`` (what a model needs, not the images)."""
        return cls(data.name, data.num_classes, data.channels, data.image_size, data.mean, data.std, data.hflip)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataInfo:
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})


_DATA_TYPES: dict[str, tuple[type, ...]] = {
    "spec": (str,), "num_classes": (int,), "in_channels": (int,), "image_size": (int,), "mean": (list, tuple),
    "std": (list, tuple), "hflip": (bool,),
}
"""The keys of a record's ``data``, with their types; ``hflip`` may be absent (older records)."""
_OPTIONAL = ("hflip",)
_RECORD_TYPES: dict[str, tuple[type, ...]] = {"space": (Mapping,), "space_name": (str,), "data": (Mapping,),
                                              "bn_layout": (str,)}


@dataclass(frozen=True)
class ModelRecord:
    """A supernet's description: its space, its data, its BN layout; ``build`` makes the module."""

    space_definition: Mapping[str, Any]
    space_name: str
    data: DataInfo
    bn_layout: str = "private"

    @classmethod
    def of(cls, space: SearchSpace, data: DataInfo, bn_layout: str = "private") -> ModelRecord:
        """The record of ``space`` trained on ``data``; the rebuilt space is ``space`` itself."""
        return cls(dict(space.definition), space.name, data, bn_layout)._with_space(space)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def in_channels(self) -> int:
        return self.data.in_channels

    @cached_property
    def space(self) -> SearchSpace:
        """The ``SearchSpace`` of the definition, parsed once per process."""
        return space_from_dict(dict(self.space_definition), source="<model record>", default_name=self.space_name)

    def build(self, seed: int = 0) -> Supernet:
        """The untrained supernet this record describes, weights seeded from ``seed``."""
        from raynas.supernet import build_supernet  # torch only when a module is wanted

        return build_supernet(self.space, self.num_classes, self.in_channels, seed=seed, bn_layout=self.bn_layout)

    def to_dict(self) -> dict[str, Any]:
        """JSON values only; ``from_dict`` gives back an equal record."""
        return {"space": dict(self.space_definition), "space_name": self.space_name, "data": self.data.to_dict(),
                "bn_layout": self.bn_layout}

    @classmethod
    def from_dict(cls, values: Any, source: str = "<dict>") -> ModelRecord:
        """Parse ``to_dict``'s output; a missing or mistyped key is a ``ConfigError`` naming it.

        The space is parsed here, so a bad definition is a ``SpaceError`` naming ``source``.
        """
        _check_keys(values, _RECORD_TYPES, source, "model")
        _check_keys(values["data"], _DATA_TYPES, source, "model.data")
        data = DataInfo.from_dict({k: values["data"][k] for k in _DATA_TYPES if k in values["data"]})
        space = space_from_dict(dict(values["space"]), source=source, default_name=values["space_name"])
        return cls(dict(values["space"]), values["space_name"], data, values["bn_layout"])._with_space(space)

    def _with_space(self, space: SearchSpace) -> ModelRecord:
        """Fill the cached ``space`` with one already parsed (errors then named its source)."""
        self.__dict__["space"] = space
        return self


def _check_keys(values: Any, types: dict[str, tuple[type, ...]], source: str, where: str) -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(values).__name__}")
    missing = [key for key in types if key not in values and key not in _OPTIONAL]
    if missing:
        raise ConfigError(f"{source}: {where} lacks key(s) {missing}; a model record needs {list(types)}")
    for key, allowed in types.items():
        value = values.get(key, True)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise ConfigError(f"{source}: {where}.{key} must be {names}, got {value!r}")

