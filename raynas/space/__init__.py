"""Search spaces: declarative dimensions, immutable architectures, sampling and encoding."""

from raynas.space._family import Family, family, known_families, register_family
from raynas.space.arch import Arch
from raynas.space.dimension import Dimension
from raynas.space.loader import load_space, shipped_spaces, space_from_dict
from raynas.space.search_space import SearchSpace

__all__ = [
    "Arch", "Dimension", "Family", "SearchSpace", "family", "known_families", "load_space", "register_family",
    "shipped_spaces", "space_from_dict",
]
