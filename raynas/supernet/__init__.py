"""Weight-sharing supernets, their elastic layers, and export of static children."""

from raynas.supernet.base import Supernet
from raynas.supernet.elastic import BATCHNORMS, ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from raynas.supernet.export import load_child, save_child
from raynas.supernet.registry import build_supernet, known_families, register_family

__all__ = [
    "BATCHNORMS", "ElasticBatchNorm2d", "ElasticConv2d", "ElasticLinear", "Supernet",
    "build_supernet", "known_families", "load_child", "register_family", "save_child",
]
