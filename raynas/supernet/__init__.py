"""Weight-sharing supernets, their elastic layers, and export of static children."""

from raynas.supernet.base import Supernet
from raynas.supernet.build import build_supernet
from raynas.supernet.elastic import BATCHNORMS, ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from raynas.supernet.export import (
    ChildRecord,
    Preprocessing,
    load_child,
    read_child_record,
    save_child,
    with_preprocessing,
)

__all__ = [
    "BATCHNORMS", "ChildRecord", "ElasticBatchNorm2d", "ElasticConv2d", "ElasticLinear", "Preprocessing",
    "Supernet", "build_supernet", "load_child", "read_child_record", "save_child", "with_preprocessing",
]
