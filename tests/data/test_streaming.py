"""Streamed input: file lists split like load_data, decoded by Ray Data in a seeded order, trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from raynas.data import StreamSplits, load_data, open_data, write_shards
from raynas.data import streaming
from raynas.data.sources import decode_files, imagefolder_source, list_folder
from raynas.data.streaming import epoch_order, stream_batches, stream_data
from raynas.errors import ConfigError, DataError, TrainingError
from raynas.space import load_space
from raynas.train import TrainConfig, train_supernet
from raynas.train.checkpoint import read_state
from raynas.train.data_feed import ShardFeed, StreamFeed, make_feed, pack_splits, pack_stream

CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.5, log_every_epoch=False)


def make_folder(root, classes=4, per_class=60, size=16, seed=0):
    """Seeded random JPEGs in ROOT/<class>/, each class a different mean colour (learnable)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 * c + 40, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def shard_dir(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "out"
    counts = write_shards(folder, out, rows_per_shard=100, row_group_rows=32)
    assert counts == {"train": 240}
    return out


@pytest.fixture(scope="module")
def split_shard_dir(tmp_path_factory):
    """Shards of a tree with a test split of its own."""
    tree = tmp_path_factory.mktemp("tree")
    make_folder(tree / "train", per_class=40)
    make_folder(tree / "test", per_class=10, seed=1)
    out = tree / "shards"
    assert write_shards(tree, out, rows_per_shard=50, row_group_rows=16) == {"train": 160, "test": 40}
    return out


@pytest.mark.parametrize("kind, root", [("imagefolder", "folder"), ("shards", "shard_dir"),
                                        ("shards", "split_shard_dir")])
def test_stream_splits_are_load_data_splits(kind, root, request):
    spec = f"{kind}:{request.getfixturevalue(root)}"
    memory, streamed = load_data(spec, seed=3, calib_images=16), stream_data(spec, seed=3, calib_images=16)
    assert memory.num_classes == streamed.num_classes == 4 and memory.image_size == 16
    assert np.array_equal(memory.train.ids.numpy(), streamed.train.ids)
    for split in ("calib", "val", "test"):
        assert torch.equal(getattr(memory, split).ids, getattr(streamed, split).ids), split
        assert torch.equal(getattr(memory, split).images, getattr(streamed, split).images), split
    assert np.allclose(memory.mean, streamed.mean, atol=1e-6) and np.allclose(memory.std, streamed.std, atol=1e-6)
    assert streamed.image_size == 16 and streamed.channels == 3 and "streamed" in streamed.summary()


def test_epoch_order_is_seeded_disjoint_and_changes_per_epoch(folder, shard_dir):
    for spec in (f"imagefolder:{folder}", f"shards:{shard_dir}"):
        train = stream_data(spec, seed=0).train
        per_rank = len(train) // (16 * 2) * 16
        ranks = [epoch_order(train, 5, 1, rank, 2, per_rank) for rank in range(2)]
        assert all(len(r) == per_rank for r in ranks)
        assert len(set(np.concatenate(ranks).tolist())) == 2 * per_rank, spec  # each image once per epoch
        assert np.array_equal(ranks[0], epoch_order(train, 5, 1, 0, 2, per_rank))
        assert not np.array_equal(ranks[0], epoch_order(train, 5, 2, 0, 2, per_rank))
        assert not np.array_equal(ranks[0], epoch_order(train, 6, 1, 0, 2, per_rank))


def test_streamed_epoch_gives_the_in_memory_batches_on_every_rank(ray_local, folder):
    """Two simulated ranks: together they see each training image once, as ShardFeed's batches."""
    spec = f"imagefolder:{folder}"
    streamed, memory = stream_data(spec, seed=0), load_data(spec, seed=0)
    stream_packed, memory_packed = pack_stream(streamed), pack_splits(memory)
    seen = []
    for rank in range(2):
        stream_feed = make_feed(stream_packed, 16, rank, 2, 7, True, torch.device("cpu"))
        memory_feed = make_feed(memory_packed, 16, rank, 2, 7, True, torch.device("cpu"))
        assert isinstance(stream_feed, StreamFeed) and isinstance(memory_feed, ShardFeed)
        assert stream_feed.steps_per_epoch() == memory_feed.steps_per_epoch() == len(streamed.train) // 32
        batches = list(stream_feed.epoch(1, first_step=10))
        expected = memory_feed.epoch(1, first_step=10)
        assert [b[0] for b in batches] == [b[0] for b in expected] == list(range(10, 10 + len(expected)))
        for (_, images, labels), (_, want_images, want_labels) in zip(batches, expected):
            assert torch.equal(images, want_images) and torch.equal(labels, want_labels)
        cut_stream = list(make_feed(stream_packed, 16, rank, 2, 7, True, torch.device("cpu"), cutout=4).epoch(1, 10))
        cut_memory = make_feed(memory_packed, 16, rank, 2, 7, True, torch.device("cpu"), cutout=4).epoch(1, 10)
        fill = torch.tensor([round(255 * m) for m in memory.mean], dtype=torch.uint8)
        for (_, cut, _), (_, same_cut, _), (_, plain, _) in zip(cut_stream, cut_memory, expected):
            changed = (cut != plain).any(1)  # the same crops and flips, then one square per image
            assert torch.equal(cut, same_cut) and changed.any(2).any(1).all()
            assert (cut.permute(0, 2, 3, 1)[changed] == fill).all()
        seen += [bytes(img.numpy()) for _, images, _ in list(make_feed(stream_packed, 16, rank, 2, 7, False,
                                                                       torch.device("cpu")).epoch(1, 0))
                 for img in images]
    assert len(seen) == len(set(seen)) == 2 * 16 * (len(streamed.train) // 32)


def test_train_streamed_and_resume_equals_uninterrupted(ray_local, folder, tmp_path):
    space, spec = load_space("tiny"), f"imagefolder:{folder}"
    straight = train_supernet(space, spec, CONFIG, out_dir=tmp_path, name="straight", input="stream")
    assert [m["epoch"] for m in straight.metrics] == [1, 2]
    assert all(np.isfinite(m["loss_max"]) and m["loss_max"] > 0 for m in straight.metrics)
    with pytest.raises(TrainingError, match="injected failure after epoch 1"):
        train_supernet(space, spec, CONFIG, out_dir=tmp_path, name="resumed", input="stream",
                       fault={"kind": "raise", "after_epoch": 1, "marker": str(tmp_path / "marker")})
    resumed = train_supernet(space, spec, CONFIG, out_dir=tmp_path, name="resumed", input="stream")
    a, b = read_state(straight.checkpoint)["model"], read_state(resumed.checkpoint)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    memory = train_supernet(space, spec, CONFIG, out_dir=tmp_path, name="memory", input="memory")
    for streamed_epoch, memory_epoch in zip(straight.metrics, memory.metrics):  # the same batches either way
        assert streamed_epoch["loss_max"] == pytest.approx(memory_epoch["loss_max"], rel=1e-4)


def test_shards_round_trip_to_the_folder_images(ray_local, folder, shard_dir):
    from_folder = load_data(f"imagefolder:{folder}", seed=0)
    from_shards = open_data(f"shards:{shard_dir}", seed=0, input="memory")
    assert from_shards.num_classes == 4 and from_shards.image_size == 16

    def pairs(data):
        return sorted((bytes(img.numpy()), int(label)) for split in ("train", "calib", "val", "test")
                      for img, label in zip(getattr(data, split).images, getattr(data, split).labels))

    assert pairs(from_folder) == pairs(from_shards)
    streamed = open_data(f"shards:{shard_dir}", seed=0, input="stream")
    assert isinstance(streamed, StreamSplits)
    order = epoch_order(streamed.train, 0, 0, 0, 1, len(streamed.train) // 16 * 16)
    got = list(stream_batches(streamed.train.subset(order), streamed.size, 16))
    want = decode_files(streamed.train.subset(order), streamed.size)
    assert np.array_equal(np.concatenate([g[0] for g in got]), want.images.numpy())
    assert np.array_equal(np.concatenate([g[1] for g in got]), want.labels.numpy())


def test_shards_keep_each_image_path_and_pixels_not_its_folder_id(folder, shard_dir):
    """Shards hold the folder's images in a seeded shuffle: an id is a shard position, so the same
    seed carves the same ids from shards as from the folder, naming other images; the path column
    leads each back to its folder image."""
    from_shards = load_data(f"shards:{shard_dir}", seed=0)
    paths = np.concatenate([pq.read_table(file, columns=["path"]).column("path").to_numpy(zero_copy_only=False)
                            for file in sorted((shard_dir / "train").glob("*.parquet"))])
    folder_id = {str(Path(p).relative_to(folder)): i for i, p in enumerate(list_folder(str(folder)).pool.sources)}
    pool, _, _ = imagefolder_source(str(folder))
    from_folder = load_data(f"imagefolder:{folder}", seed=0)
    for split in ("train", "calib", "val", "test"):
        ids = torch.tensor([folder_id[paths[i]] for i in getattr(from_shards, split).ids.tolist()])
        assert torch.equal(getattr(from_shards, split).images, pool.images[ids]), split
        assert torch.equal(getattr(from_shards, split).labels, pool.labels[ids]), split
        assert torch.equal(getattr(from_shards, split).ids, getattr(from_folder, split).ids), split
        assert set(ids.tolist()) != set(getattr(from_folder, split).ids.tolist()), split


def test_missing_and_empty_folders_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"image folder .*nope does not exist"):
        open_data(f"imagefolder:{tmp_path / 'nope'}", input="stream")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"image folder .*empty holds no images"):
        open_data(f"imagefolder:{tmp_path / 'empty'}", input="stream")
    with pytest.raises(DataError, match=r"shard folder .*none does not exist"):
        open_data(f"shards:{tmp_path / 'none'}")
    with pytest.raises(ConfigError, match=r"input='stream' reads imagefolder:ROOT or shards:ROOT, got 'digits'"):
        open_data("digits", input="stream")
    with pytest.raises(ConfigError, match=r"input must be one of \['auto', 'memory', 'stream'\], got 'disk'"):
        open_data(f"imagefolder:{tmp_path}", input="disk")


def test_shards_of_another_schema_are_refused(tmp_path):
    (tmp_path / "train").mkdir()
    pq.write_table(pa.table({"pixels": [1, 2], "target": [0, 1]}), tmp_path / "train" / "part-0.parquet")
    with pytest.raises(DataError, match=r"part-0.parquet: not a raynas image shard: expected columns image \(binary\) "
                                        r"and label \(integer\), got pixels \(int64\), target \(int64\)"):
        open_data(f"shards:{tmp_path}")


def test_a_corrupt_image_met_while_streaming_is_named(ray_local, tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images", per_class=30)
    monkeypatch.setattr(streaming, "STATS_IMAGES", 4)  # keep the statistics sample off the broken file
    spec = f"imagefolder:{root}"
    broken = stream_data(spec).train.sources[10]
    with open(broken, "wb") as file:
        file.write(b"\xff\xd8 not a jpeg")
    train = stream_data(spec).train
    with pytest.raises(DataError, match=rf"^{broken}: cannot decode this image"):
        list(stream_batches(train, (16, 16), 8))
    with pytest.raises(DataError, match=rf"^{broken}: cannot decode this image .*; replace it") as caught:
        train_supernet(load_space("tiny"), spec, CONFIG.replace(epochs=1), out_dir=tmp_path, name="bad", input="stream")
    assert "\n" not in str(caught.value)


def test_cli_shards_a_folder_and_takes_the_input_flag(folder, tmp_path, capsys):
    from raynas.cli.main import build_parser, main

    assert main(["data", "shard", f"imagefolder:{folder}", str(tmp_path / "out"), "--rows-per-shard", "64"]) == 0
    assert f"wrote 240 train images to {tmp_path / 'out'}" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "train").glob("*.parquet"))) == 4
    assert main(["data", "shard", "digits", str(tmp_path / "x")]) == 2
    assert "raynas data shard reads imagefolder:ROOT, got 'digits'" in capsys.readouterr().err
    for command in (["train", "tiny"], ["run"], ["retrain", "tiny", "--arch", "x"]):
        assert build_parser().parse_args([*command, "--input", "stream"]).input == "stream"
        assert build_parser().parse_args(command).input == "auto"
