"""Dataset loaders: seeded disjoint splits, in-memory decoding, clear errors."""

import pytest
import torch
from PIL import Image

from raynas.data import augment, cutout, load_data, to_model_input
from raynas.data.sources import digits_source
from raynas.errors import DataError


def ids_of(split):
    return set(split.ids.tolist())


SPLITS = ("train", "calib", "val", "test")


def assert_disjoint(data):
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            shared = ids_of(getattr(data, first)) & ids_of(getattr(data, second))
            assert not shared, f"{first} and {second} share images {sorted(shared)[:5]}"


def test_digits_splits_are_seeded_and_disjoint():
    a, b, c = load_data("digits", seed=0), load_data("digits", seed=0), load_data("digits", seed=1)
    assert a.num_classes == 10 and a.channels == 1 and a.image_size == 8
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.calib.labels, b.calib.labels)
    assert torch.equal(a.test.ids, b.test.ids) and torch.equal(a.val.ids, b.val.ids)
    assert not torch.equal(a.calib.ids, c.calib.ids) and not torch.equal(a.test.ids, c.test.ids)
    assert_disjoint(a)
    assert sum(len(getattr(a, s)) for s in SPLITS) == 1797
    assert len(a.test) == int(1797 * 0.2) and len(a.val) >= 200
    assert a.train.images.dtype == torch.uint8


def test_no_pixel_identical_image_crosses_from_test_into_selection():
    """Ids could be disjoint by construction and still point at the same pixels: check the pixels."""
    data = load_data("digits", seed=3)
    pool, _, _ = digits_source()
    repeated = len(pool) - len({bytes(img.numpy()) for img in pool.images})  # exact repeats in the source
    test = {bytes(img.numpy()) for img in data.test.images}
    crossing = sum(bytes(img.numpy()) in test for s in ("train", "calib", "val") for img in getattr(data, s).images)
    assert crossing <= repeated


def test_validation_comes_from_the_training_pool_when_a_test_split_exists(tmp_path):
    make_tree(tmp_path, per_class=20)
    data = load_data(f"imagefolder:{tmp_path}", calib_images=2)
    assert_disjoint(data)
    assert len(data.test) == 40 and min(data.test.ids.tolist()) >= 40  # the dataset's own test split
    assert max(data.val.ids.tolist()) < 40  # carved from the train pool


def test_split_fractions_are_validated():
    with pytest.raises(DataError, match=r"test_fraction must be in \(0, 1\), got 1.5"):
        load_data("digits", test_fraction=1.5)
    with pytest.raises(DataError, match=r"val_fraction must be in \(0, 1\), got 0"):
        load_data("digits", val_fraction=0)
    with pytest.raises(DataError, match=r"an image cap must be >= 1, got 0"):
        load_data("digits", max_test_images=0)


def test_synthetic_and_caps():
    data = load_data("synthetic", calib_images=20, max_train_images=100, max_val_images=30, max_test_images=40)
    assert (len(data.train), len(data.calib), len(data.val), len(data.test)) == (100, 20, 30, 40)
    assert_disjoint(data)


def make_tree(root, classes=("cat", "dog"), per_class=6, size=10):
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (size, size), (label * 100, i * 20, 50)).save(folder / f"{i}.png")


def test_imagefolder_tree(tmp_path):
    make_tree(tmp_path)
    data = load_data(f"imagefolder:{tmp_path}", calib_images=2)
    assert data.num_classes == 2 and data.image_size == 10
    assert (len(data.train), len(data.calib), len(data.val), len(data.test)) == (7, 2, 3, 12)
    assert set(data.test.labels.tolist()) == {0, 1}


def test_imagefolder_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_data(f"imagefolder:{tmp_path}")
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_data(f"imagefolder:{tmp_path}")


def test_cifar10_missing_files_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR-10 not found under .*download=True \(CLI: --download\)"):
        load_data(f"cifar10:{tmp_path}")


def test_unknown_dataset_lists_formats():
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'; valid formats: digits, synthetic, .*, shards:ROOT"):
        load_data("mnist")


def test_transforms_resize_and_augment():
    data = load_data("synthetic")
    gen = torch.Generator().manual_seed(0)
    batch = augment(data.train.images[:8], gen)
    assert batch.shape == data.train.images[:8].shape and batch.dtype == torch.uint8
    x = to_model_input(batch, data.mean, data.std, 12)
    assert x.shape == (8, 3, 12, 12) and abs(x.mean().item()) < 1.0


def test_cutout_fills_one_clipped_square_per_image_and_leaves_the_rest():
    images = torch.full((256, 3, 9, 9), 255, dtype=torch.uint8)
    out = cutout(images, torch.Generator().manual_seed(0), 4, (10, 20, 30))
    again = cutout(images, torch.Generator().manual_seed(0), 4, (10, 20, 30))
    assert torch.equal(out, again) and out.dtype == torch.uint8
    filled = out != 255
    assert torch.equal(filled[:, 0], filled[:, 1]) and torch.equal(filled[:, 0], filled[:, 2])  # every channel
    assert out[:, 0][filled[:, 0]].eq(10).all() and out[:, 2][filled[:, 2]].eq(30).all()
    mask = filled[:, 0]
    rows, cols = mask.any(2), mask.any(1)
    assert torch.equal(mask, rows[:, :, None] & cols[:, None, :])  # one axis-aligned rectangle per image
    sides = torch.stack([rows.sum(1), cols.sum(1)], 1)
    assert sides.min() == 2 and sides.max() == 4  # centred on any pixel: clipped to 2..4 rows and columns
    assert (sides == 4).all(1).any() and (sides < 4).any()  # whole squares inside, clipped ones at the border


@pytest.mark.slow
def test_imagefolder_on_cifar10_jpeg_tree(cifar_jpeg_root):
    data = load_data(f"imagefolder:{cifar_jpeg_root}", seed=0)
    assert data.num_classes == 10 and data.image_size == 32 and data.channels == 3
    assert (len(data.train), len(data.calib), len(data.val), len(data.test)) == (43000, 2000, 5000, 10000)
    assert_disjoint(data)
    assert abs(data.mean[0] - 0.4913) < 0.01
