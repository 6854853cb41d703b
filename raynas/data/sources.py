"""Dataset sources. Each returns decoded (train pool, test set or None, class count).

    digits           scikit-learn's bundled 8x8 handwritten digits (the embedded default)
    synthetic        seeded class templates plus noise, for unit tests
    cifar10:ROOT     torchvision's CIFAR-10 layout; download only when asked
    imagefolder:ROOT any ImageFolder tree: ROOT/train/<class>/*, ROOT/test|val/<class>/*, or ROOT/<class>/*
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from raynas.data.images import ImageSet
from raynas.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff"}
Source = tuple[ImageSet, ImageSet | None, int]


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
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; expected ROOT/<class>/<image> or ROOT/train/<class>/<image>")
    train_dir = folder / "train" if (folder / "train").is_dir() else folder
    test_dir = next((folder / n for n in ("test", "val") if (folder / n).is_dir() and train_dir != folder), None)
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"image folder {train_dir} has no class sub-folders; expected {train_dir}/<class>/<image>")
    train = _decode_tree(train_dir, classes)
    test = None if test_dir is None else _decode_tree(test_dir, classes)
    return train, test, len(classes)


def _decode_tree(folder: Path, classes: list[str]) -> ImageSet:
    from PIL import Image

    files, labels = [], []
    for label, name in enumerate(classes):
        class_dir = folder / name
        found = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if class_dir.is_dir() else []
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise DataError(f"image folder {folder} holds no images (looked for {sorted(IMAGE_SUFFIXES)} under {folder}/<class>/)")
    size = _read_image(files[0]).size
    arrays = np.empty((len(files), size[1], size[0], 3), dtype=np.uint8)
    for i, path in enumerate(files):
        image = _read_image(path)
        if image.size != size:
            image = image.resize(size, Image.BILINEAR)
        arrays[i] = np.asarray(image)
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64))


def _read_image(path: Path) -> Image.Image:
    """One decoded RGB image; a truncated or corrupt file is a DataError naming it, not a PIL traceback."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError) as err:  # PIL: OSError for truncated files, SyntaxError for broken PNG chunks
        fix = "replace it or move it out of the image folder"
        raise DataError(f"{path}: cannot decode this image ({err}); {fix}") from err
