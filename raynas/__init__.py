"""raynas: neural architecture search on Ray.

BigNAS supernets (sandwich rule, inplace distillation, BN calibration), BN-NAS scoring from BN
gammas, and budgeted performance estimation with minimum importance pruning.
"""

from raynas.errors import ArchError, ConfigError, DataError, RaynasError, SpaceError, TrainingError
from raynas.space import Arch, SearchSpace, load_space

__version__ = "0.1.0"

__all__ = [
    "Arch", "ArchError", "ConfigError", "DataError", "RaynasError", "SearchSpace", "SpaceError",
    "TrainingError", "load_space",
]
