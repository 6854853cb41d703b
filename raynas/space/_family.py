"""The family record: everything a search-space family plugs into raynas, registered once.

A family (``mobilenet``, ``nb201`` or one of your own) lives in one module that calls
``register_family(Family(...))``, as timm registers a model family in its own file; nothing
else names it. The pure-Python half (YAML keys, parser) is held directly. The torch half is
named by an import path ``"package.module:attribute"`` or a zero-argument loader and imported
on first use, so ``raynas.space`` stays importable without torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from raynas.errors import ConfigError, RaynasError, SpaceError
from raynas.registry import Registry
from raynas.space.reader import Node
from raynas.space.search_space import FamilySpec

Loader = str | Callable[[], Any]
"""``"package.module:attribute"``, or a zero-argument function that returns the part."""
Part = Literal["supernet", "cost", "bn_tables", "bn_walker", "latency", "proxy_space", "proxy_child"]
"""The lazily loaded fields of ``Family``."""


@dataclass(frozen=True)
class Family:
    """One search-space family. Each loaded part's call signature is in its field's docstring."""

    name: str
    keys: tuple[str, ...]
    """Top-level YAML keys the family reads, besides name, family, description and notes."""
    parse: Callable[[Node], FamilySpec]
    """The space file's root node -> the family's spec; errors name the file, the key and the rule."""
    supernet: Loader
    """``(space, num_classes, in_channels, *, bn_layout) -> Supernet``."""
    cost: Loader
    """``(space, index_matrix, num_classes, in_channels) -> (macs, params)``: int arrays, one entry per row."""
    bn_tables: Loader | None = None
    """``(supernet, measure, parameterless_score) -> {op: OpTable}``, what ``BNIndicator.fit`` reads."""
    bn_walker: Loader | None = None
    """``(supernet, arch, measure, parameterless_score) -> [op score]``, ``score_direct``'s slow reference."""
    latency: Loader | None = None
    """A ``raynas.estimate.latency.LatencyParts``: the signature walk, covering matrix and probes."""
    proxy_space: Loader | None = None
    """``(definition, width_multiplier, resolution) -> definition``: BPE's width and resolution proxies."""
    proxy_child: Loader | None = None
    """``(definition, channels, cells_per_stage, resolution) -> definition``: the standalone proxy's
    skeleton (``raynas.bpe.proxy``); None refuses standalone proxies on this family."""
    default_sampling: str | None = None
    """The supernet sampling that ranked best on this family (``raynas.search.recipes``); None: the fallback."""
    default_estimator: str | None = None
    """The label-free estimator expression that ranked best on this family (``raynas.search.recipes``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpaceError(f"a family name must be a non-empty string, got {self.name!r}")
        object.__setattr__(self, "keys", tuple(self.keys))
        for part in get_args(Part):
            loader = getattr(self, part)
            if isinstance(loader, str) and ":" not in loader:
                raise SpaceError(f"family {self.name!r}: {part} must be 'package.module:attribute', got {loader!r}")

    def load(self, part: Part) -> Any:
        """The part, imported now (Python caches the module); None where the family has none."""
        loader = getattr(self, part)
        if loader is None:
            return None
        if callable(loader):
            return loader()
        module, _, attribute = loader.partition(":")
        return getattr(importlib.import_module(module), attribute)


_FAMILIES: Registry[Family] = Registry("family", "families", SpaceError)


def register_family(record: Family) -> Family:
    """Make ``family: <name>`` space files load, build, cost and score with the record's parts.

    Registering an equal record again does nothing; another record under a taken name is an error.
    """
    return _FAMILIES.register(record.name, record)


def family(name: str) -> Family:
    """The registered family ``name``; an unknown name lists the known ones."""
    return _FAMILIES.get(name)


def known_families(part: Part | None = None) -> list[str]:
    """Registered family names, sorted; with ``part``, only the families that have that part."""
    return _FAMILIES.names(None if part is None else lambda f: getattr(f, part) is not None)


def family_part(name: str, part: Part, what: str, error: type[RaynasError] = ConfigError) -> Any:
    """``family(name).load(part)``; a family that is unknown or lacks the part raises ``error``
    ("no <what> for family 'x'; known families: [...]", listing those that have it)."""
    found = _FAMILIES.find(name)
    loaded = None if found is None else found.load(part)
    if loaded is None:
        raise error(f"no {what} for family {name!r}; known families: {known_families(part)}")
    return loaded


__all__ = ["Family", "Loader", "Part", "family", "family_part", "known_families", "register_family"]
