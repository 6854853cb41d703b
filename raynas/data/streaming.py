"""Training images streamed through Ray Data: the driver lists files, the cluster decodes them.

``load_data`` decodes a whole dataset into the driver: fine for digits or CIFAR-10, impossible
for ImageNet. Here the driver lists files (paths and labels: ``sources.list_folder``,
``sources.list_shard_folder``, as ``load_data`` lists them) and cuts the same seeded splits
(``splits.carve_splits``: same rules, same ids); it decodes only the small calibration and validation
splits, the test split (when the final report asks for it) and a fixed sample for the channel
statistics. Training images are read and decoded by Ray Data tasks on the cluster's CPUs, resized
to the dataset's fixed size, and streamed to each training worker in an order fixed by
(seed, epoch, rank): see ``epoch_order``.

    imagefolder:ROOT  ROOT/train/<class>/*, ROOT/test|val/<class>/*, or ROOT/<class>/*
    shards:ROOT       Parquet shards of encoded images (``raynas.data.shards``)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from raynas.data.images import DataSplits, ImageSet
from raynas.data.sources import FileSet, Listing, decode_files, decode_images, list_folder, list_shard_folder
from raynas.data.splits import carve_splits, load_data
from raynas.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ray.data.block import DataBatch

INPUTS = ("auto", "memory", "stream")
STREAMABLE = ("imagefolder", "shards")
STATS_IMAGES = 10_000
"""Images for the channel mean and std: the first of the training split, as ``load_data`` takes."""
CHUNK_IMAGES = 256
"""Images per Ray Data decode task (one block). Shard rows are shuffled within a chunk."""
TRACE_ENV = "RAYNAS_DECODE_TRACE"
AUTO_STREAM_BYTES = 4 * 2**30
AUTO_STREAM_MEMORY_SHARE = 1 / 8
"""``input="auto"`` streams when the decoded pool would exceed 4 GiB or an eighth of this
machine's memory (the in-memory path holds it in the driver, the object store and each worker).
Below that the in-memory path is faster: see benchmarks/input_path.py."""


@dataclass(frozen=True, eq=False)
class StreamSplits:
    """``DataSplits`` whose training split stays on disk: a ``FileSet`` streamed by Ray Data.

    Same splits and ids as ``load_data`` gives for the same spec and seed. ``calib``, ``val``
    and ``test`` are decoded when first read (``test`` only by the final report).
    """

    name: str
    train: FileSet
    calib_files: FileSet
    val_files: FileSet
    test_files: FileSet
    num_classes: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True

    @cached_property
    def calib(self) -> ImageSet:
        return decode_files(self.calib_files, self.size)

    @cached_property
    def val(self) -> ImageSet:
        return decode_files(self.val_files, self.size)

    @cached_property
    def test(self) -> ImageSet:
        return decode_files(self.test_files, self.size)

    @property
    def channels(self) -> int:
        return 3

    @property
    def image_size(self) -> int:
        return self.size[0]

    def summary(self) -> str:
        return (f"{self.name}: {len(self.train)} train (streamed) / {len(self.calib_files)} calib / "
                f"{len(self.val_files)} val / {len(self.test_files)} test images, "
                f"{self.channels}x{self.size[1]}x{self.size[0]}, {self.num_classes} classes")

    def in_memory(self) -> DataSplits:
        """The same splits, every image decoded (``load_data``'s images; mean and std agree to ~1e-6)."""
        return DataSplits(self.name, decode_files(self.train, self.size), self.calib, self.val, self.test,
                          self.num_classes, self.mean, self.std, self.hflip)


# --- choosing the input path ---------------------------------------------------------------
def open_data(spec: str, seed: int = 0, input: str = "auto", download: bool = False,
              **split_options: Any) -> DataSplits | StreamSplits:
    """``spec`` decoded in memory (``load_data``) or listed for streaming, as ``input`` says.

    ``input``: "memory", "stream" (imagefolder:ROOT and shards:ROOT only), or "auto": stream
    when the decoded images would not fit comfortably in memory (``AUTO_STREAM_BYTES``).
    ``split_options`` are ``load_data``'s (calib_images, val_fraction, ...).
    """
    mode, listing = _resolve(spec, input)
    if mode == "memory":
        return load_data(spec, seed=seed, download=download, **split_options)
    return stream_data(spec, seed, listing, **split_options)


def resolve_input(spec: str, input: str = "auto") -> str:
    """"memory" or "stream": how ``open_data`` reads ``spec`` under ``input`` (lists the files for "auto")."""
    return _resolve(spec, input)[0]


def _resolve(spec: str, input: str) -> tuple[str, Listing | None]:
    if input not in INPUTS:
        raise ConfigError(f"input must be one of {list(INPUTS)}, got {input!r}")
    if spec.partition(":")[0] not in STREAMABLE:
        if input == "stream":
            raise ConfigError(f"input='stream' reads imagefolder:ROOT or shards:ROOT, got {spec!r}; "
                              "use input='memory' (or 'auto') for it")
        return "memory", None
    listing = list_images(spec)
    return ("stream" if input == "stream" or (input == "auto" and should_stream(listing)) else "memory"), listing


def should_stream(listing: Listing) -> bool:
    """The ``input="auto"`` rule: stream when the decoded images would take too much memory."""
    count = len(listing.pool) + (len(listing.test) if listing.test is not None else 0)
    decoded = count * 3 * listing.size[0] * listing.size[1]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return decoded > min(AUTO_STREAM_BYTES, AUTO_STREAM_MEMORY_SHARE * memory)


# --- listing ------------------------------------------------------------------------------
def list_images(spec: str) -> Listing:
    """The files of ``imagefolder:ROOT`` or ``shards:ROOT``; only the first image is opened."""
    kind, _, root = spec.partition(":")
    if kind == "imagefolder" and root:
        return list_folder(root)
    if kind == "shards" and root:
        return list_shard_folder(root)
    raise DataError(f"cannot stream {spec!r}; streamed formats: imagefolder:ROOT, shards:ROOT")


# --- splits -------------------------------------------------------------------------------
def stream_data(spec: str, seed: int = 0, listing: Listing | None = None, calib_images: int | None = None,
                val_fraction: float = 0.1, test_fraction: float = 0.2, max_train_images: int | None = None,
                max_val_images: int | None = None, max_test_images: int | None = None) -> StreamSplits:
    """``load_data``'s splits of ``spec`` as file lists; decodes only the channel-statistics sample."""
    listing = listing or list_images(spec)
    train, calib, val, test = carve_splits(
        spec, listing.pool, listing.test, seed, calib_images=calib_images, val_fraction=val_fraction,
        test_fraction=test_fraction, max_train_images=max_train_images, max_val_images=max_val_images,
        max_test_images=max_test_images)
    mean, std = channel_stats(train.subset(np.arange(min(len(train), STATS_IMAGES))), listing.size)
    return StreamSplits(spec, train, calib, val, test, len(listing.classes), listing.size, mean, std, hflip=True)


def channel_stats(files: FileSet, size: tuple[int, int]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (of pixels / 255) from per-chunk histograms: memory stays one chunk."""
    counts = np.zeros((3, 256), dtype=np.int64)
    for start in range(0, len(files), CHUNK_IMAGES):
        images = decode_files(files.subset(np.arange(start, min(start + CHUNK_IMAGES, len(files)))), size).images
        for channel in range(3):
            counts[channel] += np.bincount(images[:, channel].numpy().ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum(axis=1)
    mean = counts @ values / n
    var = (counts @ values**2 - n * mean**2) / np.maximum(n - 1, 1)  # unbiased, as torch.std
    std = np.maximum(np.sqrt(np.maximum(var, 0.0)), 1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# --- decoding -----------------------------------------------------------------------------
def decode_batch(batch: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The Ray Data map function: ``{source, row, label}`` -> ``{image: (n, 3, H, W) uint8, label}``.

    Images are decoded as ``load_data`` decodes them (``sources.decode_images``).
    """
    _trace_decode()
    return {"image": decode_images(batch["source"], batch["row"], size),
            "label": np.asarray(batch["label"], dtype=np.int64)}


def _trace_decode() -> None:
    """Test hook: where ``RAYNAS_DECODE_TRACE`` names a folder (set it in a job's runtime_env, for its
    workers only), a decode leaves a file there named by its node and pid."""
    folder = os.environ.get(TRACE_ENV)
    if folder:
        import ray

        Path(folder, f"{ray.get_runtime_context().get_node_id()}-{os.getpid()}").touch()


# --- the per-rank stream ------------------------------------------------------------------
def epoch_order(files: FileSet, seed: int, epoch: int, rank: int, world: int, per_rank: int) -> np.ndarray:
    """Positions in ``files`` that ``rank`` reads in ``epoch``, ``per_rank`` of them, fixed by (seed, epoch).

    Every rank gets a disjoint share, so an epoch reads each image at most once (the tail that
    does not fill a step on every rank is dropped). Image files follow torch's DistributedSampler
    exactly (the in-memory path's order, so both paths train on the same batches). Shards are read
    a row group at a time: the row groups are permuted, each rank takes a contiguous run, and rows
    are shuffled within each chunk of ``CHUNK_IMAGES`` (what one decode task reads).
    """
    if not files.grouped:
        return sampler_order(len(files), seed, epoch, rank, world, per_rank)
    units, unit_of = np.unique(files.units, return_inverse=True)
    place = np.empty(len(units), dtype=np.int64)
    place[torch.randperm(len(units), generator=torch.Generator().manual_seed(seed + epoch)).numpy()] = \
        np.arange(len(units))
    order = np.lexsort((files.rows, place[unit_of]))  # row groups in permuted order, rows in file order
    mine = order[rank * per_rank:(rank + 1) * per_rank].copy()
    rng = np.random.default_rng([seed, epoch, rank])
    for start in range(0, len(mine), CHUNK_IMAGES):
        mine[start:start + CHUNK_IMAGES] = rng.permutation(mine[start:start + CHUNK_IMAGES])
    return mine


def sampler_order(count: int, seed: int, epoch: int, rank: int, world: int, per_rank: int) -> np.ndarray:
    """The first ``per_rank`` indices torch's DistributedSampler (shuffled, drop_last) gives ``rank``."""
    # the sampler only takes the length of its dataset, so a range of the indices stands in for one
    indices = cast(Dataset[int], range(count))
    sampler: DistributedSampler[int] = DistributedSampler(
        indices, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    return np.fromiter(sampler, dtype=np.int64)[:per_rank]


def stream_batches(files: FileSet, size: tuple[int, int], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``files`` in this order, decoded by Ray Data tasks on the cluster: (images NCHW uint8, labels) batches.

    One dataset per call: its blocks are chunks of ``CHUNK_IMAGES`` files, decoded in parallel and
    delivered in order (``preserve_order``), so the batches are the same on every run.
    """
    import pyarrow as pa
    import ray.data

    tables = [pa.table({"source": pa.array(files.sources[start:start + CHUNK_IMAGES], type=pa.string()),
                        "row": files.rows[start:start + CHUNK_IMAGES],
                        "label": files.labels[start:start + CHUNK_IMAGES]})
              for start in range(0, len(files), CHUNK_IMAGES)]
    if not tables:
        return
    # batch_format="numpy" hands decode_batch dicts of arrays and fn_kwargs gives its size; ray's
    # stubs can express neither, so they take it for a function of any batch format
    decode = cast("Callable[[DataBatch], DataBatch]", decode_batch)
    with _quiet("ray.data"):
        dataset = ray.data.from_arrow(tables).map_batches(
            decode, fn_kwargs={"size": tuple(size)}, batch_size=None, batch_format="numpy")
        dataset.context.execution_options.preserve_order = True
        dataset.context.enable_progress_bars = False
        try:
            for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=True,
                                              prefetch_batches=2):
                arrays = cast(dict[str, np.ndarray], batch)  # batch_format="numpy"
                yield arrays["image"], arrays["label"]
        except Exception as err:
            found = _data_error(err)
            if found is None:
                raise
            raise DataError(found) from None


def _data_error(err: BaseException) -> str | None:
    """The message of a ``DataError`` raised in a Ray Data task: Ray passes on only its traceback text."""
    found = re.findall(r"raynas\.errors\.DataError: ([^\n]*)", str(err))
    return found[-1] if found else None


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Raise a logger's level to WARNING for a block (Ray Data logs every execution at INFO)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
