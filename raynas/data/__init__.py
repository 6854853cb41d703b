"""Datasets: decoded once, kept in memory, split by seed."""

from raynas.data.images import DataSplits, ImageSet
from raynas.data.splits import FORMATS, load_data
from raynas.data.transforms import augment, to_model_input

__all__ = ["FORMATS", "DataSplits", "ImageSet", "augment", "load_data", "to_model_input"]
