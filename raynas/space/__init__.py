"""Search spaces: declarative dimensions, immutable architectures, sampling and encoding."""

from raynas.space.arch import Arch
from raynas.space.dimension import Dimension
from raynas.space.loader import load_space, shipped_spaces, space_from_dict
from raynas.space.search_space import SearchSpace

__all__ = ["Arch", "Dimension", "SearchSpace", "load_space", "shipped_spaces", "space_from_dict"]
