"""Datasets: small ones decoded once and kept in memory, large ones listed and streamed; split by seed."""

from raynas.data.images import DataSplits, ImageSet
from raynas.data.shards import write_shards
from raynas.data.sources import FileSet
from raynas.data.splits import FORMATS, load_data
from raynas.data.streaming import INPUTS, StreamSplits, open_data
from raynas.data.transforms import augment, cutout, to_model_input

__all__ = ["FORMATS", "INPUTS", "DataSplits", "FileSet", "ImageSet", "StreamSplits", "augment", "cutout", "load_data",
           "open_data", "to_model_input", "write_shards"]
