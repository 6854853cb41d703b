"""Dataset sources. Each returns decoded (train pool, test set or None, class count).

    digits           scikit-learn's bundled 8x8 handwritten digits (the embedded default)
    synthetic        seeded class templates plus noise, for unit tests
    cifar10:ROOT     torchvision's CIFAR-10 layout; download only when asked
    imagefolder:ROOT any ImageFolder tree: ROOT/train/<class>/*, ROOT/test|val/<class>/*, or ROOT/<class>/*
    shards:ROOT      Parquet shards of encoded images (``raynas.data.shards``)

Image folders and shards are first listed (``list_folder``, ``list_shard_folder``: a ``FileSet``
of where each encoded image is, its label and id), then decoded (``decode_files``). The streamed
input path (``raynas.data.streaming``) uses the same listing and decoder, so both paths see the
same images with the same ids.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from raynas.data import shards
from raynas.data.images import ImageSet
from raynas.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff"}
DECODE_CHUNK = 64
"""Images per thread task in ``decode_files``."""
Source = tuple[ImageSet, ImageSet | None, int]


@dataclass(frozen=True, eq=False)
class FileSet:
    """Encoded images named by where they are stored, with labels and ids; nothing decoded.

    ``sources`` is the image file, or the Parquet shard holding the image at ``rows`` (-1 for a
    file). ``units`` number what a reader fetches at once: a shard's row group, or one file.
    """

    sources: np.ndarray
    rows: np.ndarray
    units: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | torch.Tensor) -> "FileSet":
        index = np.asarray(index)
        return FileSet(*(column[index] for column in (self.sources, self.rows, self.units, self.labels, self.ids)))

    @property
    def grouped(self) -> bool:
        """Whether images come in row groups (shards) rather than one file each."""
        return bool((self.rows >= 0).any())


@dataclass(frozen=True, eq=False)
class Listing:
    """What is known of an image folder or a shard folder before decoding any image but the first."""

    root: Path
    pool: FileSet
    test: FileSet | None
    classes: list[str]
    size: tuple[int, int]  # (width, height) every image is resized to: the first pool image's


def digits_source() -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    return ImageSet(images, torch.from_numpy(bunch.target.astype(np.int64))), None, 10


def synthetic_source(num_images: int = 512, num_classes: int = 4, size: int = 16, seed: int = 0) -> Source:
    """Learnable but not trivial: each class is a fixed random template, images add noise."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, 3, size, size, generator=gen) * 255
    labels = torch.randint(0, num_classes, (num_images,), generator=gen)
    noise = torch.randn(num_images, 3, size, size, generator=gen) * 60
    images = (templates[labels] + noise).clamp(0, 255).to(torch.uint8)
    return ImageSet(images, labels), None, num_classes


def cifar10_source(root: str, download: bool = False) -> Source:
    from torchvision.datasets import CIFAR10

    folder = Path(root)
    try:
        train = CIFAR10(str(folder), train=True, download=download)
        test = CIFAR10(str(folder), train=False, download=download)
    except RuntimeError as err:
        raise DataError(
            f"CIFAR-10 not found under {folder} (expected {folder / 'cifar-10-batches-py'}): {err}. "
            "Fix: pass download=True (CLI: --download) on a machine with internet, "
            "or point imagefolder:ROOT at a JPEG tree."
        ) from err

    def as_set(ds: CIFAR10) -> ImageSet:
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return ImageSet(images, torch.tensor(ds.targets, dtype=torch.int64))

    return as_set(train), as_set(test), 10


def imagefolder_source(root: str) -> Source:
    return decode_listing(list_folder(root))


def shards_source(root: str) -> Source:
    return decode_listing(list_shard_folder(root))


def decode_listing(listing: Listing) -> Source:
    """Every image of ``listing`` decoded, each resized to ``listing.size``."""
    test = None if listing.test is None else decode_files(listing.test, listing.size)
    return decode_files(listing.pool, listing.size), test, len(listing.classes)


# --- listing ------------------------------------------------------------------------------
def list_folder(root: str) -> Listing:
    """An ImageFolder tree: classes sorted, files sorted within a class; test ids follow the pool's."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; expected ROOT/<class>/<image> or ROOT/train/<class>/<image>")
    train_dir = folder / "train" if (folder / "train").is_dir() else folder
    test_dir = next((folder / n for n in ("test", "val") if (folder / n).is_dir() and train_dir != folder), None)
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"image folder {train_dir} has no class sub-folders; expected {train_dir}/<class>/<image>")
    pool = _list_tree(train_dir, classes, first_id=0)
    test = None if test_dir is None else _list_tree(test_dir, classes, first_id=len(pool))
    width, height = open_image(pool.sources[0], pool.sources[0]).size
    return Listing(folder, pool, test, classes, (width, height))


def _list_tree(folder: Path, classes: list[str], first_id: int) -> FileSet:
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        found = sorted(e.name for e in os.scandir(class_dir) if Path(e.name).suffix.lower() in IMAGE_SUFFIXES) \
            if class_dir.is_dir() else []
        paths.extend(str(class_dir / f) for f in found)
        labels.extend([label] * len(found))
    if not paths:
        raise DataError(f"image folder {folder} holds no images (looked for {sorted(IMAGE_SUFFIXES)} under {folder}/<class>/)")
    n = len(paths)
    return FileSet(np.array(paths, dtype=object), np.full(n, -1, dtype=np.int64), np.arange(n, dtype=np.int64),
                   np.array(labels, dtype=np.int64), np.arange(first_id, first_id + n, dtype=np.int64))


def list_shard_folder(root: str) -> Listing:
    """A shard folder, in shard file then row order: ids are shard positions, not the source folder's ids."""
    train_dir, test_dir = shards.shard_layout(root)
    pool, metadata = shards.list_shards(train_dir)
    pool_set = _shard_file_set(pool, first_id=0, first_unit=0)
    test = None
    if test_dir is not None:
        listed, _ = shards.list_shards(test_dir)
        test = _shard_file_set(listed, first_id=len(pool_set), first_unit=int(pool.units.max()) + 1)
    classes = list(metadata.get("classes") or [str(c) for c in range(int(pool.labels.max()) + 1)])
    size = metadata.get("image_size") or next(_decoded(pool_set.sources[:1], pool_set.rows[:1]))[1].size
    return Listing(Path(root), pool_set, test, classes, (int(size[0]), int(size[1])))


def _shard_file_set(listed: shards.ShardListing, first_id: int, first_unit: int) -> FileSet:
    n = len(listed.labels)
    return FileSet(listed.sources, listed.rows, listed.units + first_unit, listed.labels,
                   np.arange(first_id, first_id + n, dtype=np.int64))


# --- decoding -----------------------------------------------------------------------------
def decode_files(files: FileSet, size: tuple[int, int]) -> ImageSet:
    """Decode ``files`` here, a chunk per thread (PIL releases the GIL while it decodes)."""
    width, height = size
    chunks = [np.arange(start, min(start + DECODE_CHUNK, len(files))) for start in range(0, len(files), DECODE_CHUNK)]
    images = np.empty((len(files), 3, height, width), dtype=np.uint8)

    def fill(index: np.ndarray) -> None:
        images[index] = decode_images(files.sources[index], files.rows[index], size)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, chunks))
    return ImageSet(torch.from_numpy(images), torch.from_numpy(files.labels.copy()), torch.from_numpy(files.ids.copy()))


def decode_images(sources: np.ndarray, rows: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, 3, H, W) uint8: each image decoded, converted to RGB and resized to ``size`` (bilinear).

    An undecodable image is a ``DataError`` that names its file (and shard row).
    """
    from PIL import Image

    width, height = size
    images = np.empty((len(sources), 3, height, width), dtype=np.uint8)
    for i, (_, image) in enumerate(_decoded(sources, rows)):
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        images[i] = np.asarray(image).transpose(2, 0, 1)
    return images


def _decoded(sources: np.ndarray, rows: np.ndarray) -> Iterator[tuple[str, Image.Image]]:
    """(name for errors, decoded RGB image) per image; each shard's row groups are read once."""
    encoded: dict[int, tuple[str, str | io.BytesIO]] = {}
    for i in np.flatnonzero(rows < 0):
        encoded[int(i)] = (str(sources[i]), str(sources[i]))
    in_shards = np.flatnonzero(rows >= 0)
    for source in np.unique(sources[in_shards]) if len(in_shards) else []:
        index = in_shards[sources[in_shards] == source]
        for i, (blob, path) in zip(index, shards.read_rows(source, rows[index])):
            encoded[int(i)] = (f"{source} row {rows[i]}" + (f" ({path})" if path else ""), io.BytesIO(blob))
    for position in range(len(sources)):
        name, opened = encoded[position]
        yield name, open_image(opened, name)


def open_image(opened: str | io.BytesIO, name: str) -> Image.Image:
    """One decoded RGB image; a truncated or corrupt one is a DataError naming it, not a PIL traceback."""
    from PIL import Image

    try:
        with Image.open(opened) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError) as err:  # PIL: OSError for truncated files, SyntaxError for broken PNG chunks
        raise DataError(f"{name}: cannot decode this image ({err}); replace it or move it out of the data") from err
