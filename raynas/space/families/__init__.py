"""The built-in space families; importing this package registers them (see ``raynas.space.Family``)."""

from raynas.space.families.mobilenet import MobileNetSpec
from raynas.space.families.nb201 import NB201Spec

__all__ = ["MobileNetSpec", "NB201Spec"]
