"""Registry of space families: each parses its YAML section into a ``FamilySpec``."""

from __future__ import annotations

from collections.abc import Callable

from raynas.space.families.mobilenet import MobileNetSpec
from raynas.space.families.nb201 import NB201Spec
from raynas.space.reader import Node
from raynas.space.search_space import FamilySpec

FAMILY_PARSERS: dict[str, Callable[[Node], FamilySpec]] = {
    "mobilenet": MobileNetSpec.parse,
    "nb201": NB201Spec.parse,
}

__all__ = ["FAMILY_PARSERS", "MobileNetSpec", "NB201Spec"]
