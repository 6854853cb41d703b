"""Parquet image shards: encoded image bytes and labels, written once, streamed by Ray Data.

WebDataset-style: a folder of files, each a few row groups of images stored as the bytes of
their files (no decoding at write time), in a seeded random order so that every row group mixes
the classes. Reading fetches whole row groups, which is what makes shards fast on shared or
object storage where one file per image is slow.

    OUT/train/shard-00000.parquet, ...   the training pool
    OUT/test/shard-00000.parquet, ...    the source's own test split, where it has one

Columns: ``image`` (binary: the encoded file), ``label`` (int64), ``path`` (string: the source
file, relative to its folder). The schema's ``raynas`` metadata holds the format, the class
names and the size every image is resized to when decoded.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raynas.errors import DataError

FORMAT = "raynas-shards/1"
ROWS_PER_SHARD = 1024
ROW_GROUP_ROWS = 256
"""A reader fetches a row group at a time: 256 ImageNet JPEGs are about 28 MB."""
METADATA_KEY = b"raynas"
SCHEMA = pa.schema([("image", pa.binary()), ("label", pa.int64()), ("path", pa.string())])


@dataclass(frozen=True, eq=False)
class ShardListing:
    """Every image of one split of a shard folder, without its bytes: where it is and its label.

    ``units`` numbers the (file, row group) pairs: a reader fetches one unit at once.
    """

    sources: np.ndarray  # the shard file of each image (str)
    rows: np.ndarray  # its row in that file
    units: np.ndarray
    labels: np.ndarray


def write_shards(root: str | os.PathLike[str], out_dir: str | os.PathLike[str], rows_per_shard: int = ROWS_PER_SHARD,
                 row_group_rows: int = ROW_GROUP_ROWS, seed: int = 0) -> dict[str, int]:
    """Write the ImageFolder tree ``root`` as Parquet shards under ``out_dir``; returns image counts.

    Each file is written under a temporary name and renamed into place, so a folder never holds
    a half-written shard. ``out_dir`` must not hold shards already.
    """
    from raynas.data.sources import list_folder  # sources reads shards: import on use, not at load

    if rows_per_shard < 1 or row_group_rows < 1:
        raise DataError(f"rows_per_shard and row_group_rows must be >= 1, got {rows_per_shard} and {row_group_rows}")
    out = Path(out_dir)
    if any(out.glob("*/*.parquet")) or any(out.glob("*.parquet")):
        raise DataError(f"{out} already holds Parquet files; write shards into an empty or new folder")
    listing = list_folder(str(root))
    metadata = {METADATA_KEY: json.dumps({"format": FORMAT, "classes": listing.classes,
                                          "image_size": list(listing.size)}).encode()}
    counts = {}
    for split, files in (("train", listing.pool), ("test", listing.test)):
        if files is None:
            continue
        order = np.random.default_rng(seed).permutation(len(files))
        for number, start in enumerate(range(0, len(order), rows_per_shard)):
            part = order[start:start + rows_per_shard]
            paths = [Path(p) for p in files.sources[part]]
            table = pa.table({"image": _read_all(paths), "label": files.labels[part],
                              "path": [str(p.relative_to(listing.root)) for p in paths]},
                             schema=SCHEMA.with_metadata(metadata))
            _write_atomic(table, out / split / f"shard-{number:05d}.parquet", row_group_rows)
        counts[split] = len(files)
    return counts


def _read_all(paths: list[Path]) -> list[bytes]:
    with ThreadPoolExecutor(max_workers=8) as pool:  # reading files is I/O: threads overlap the waits
        return list(pool.map(Path.read_bytes, paths))


def _write_atomic(table: pa.Table, file: Path, row_group_rows: int) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    pq.write_table(table, tmp, row_group_size=row_group_rows)
    os.replace(tmp, file)


def shard_layout(root: str) -> tuple[Path, Path | None]:
    """The folders holding the training and the test shards (None: no test split of its own)."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"shard folder {folder} does not exist; write one with `raynas data shard imagefolder:SRC {folder}`")
    train_dir = folder / "train" if (folder / "train").is_dir() else folder
    test_dir = folder / "test" if train_dir != folder and (folder / "test").is_dir() else None
    return train_dir, test_dir


def list_shards(folder: Path) -> tuple[ShardListing, dict]:
    """Every image of the shards in ``folder`` (labels only are read), and the writer's metadata."""
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise DataError(f"shard folder {folder} holds no .parquet files; "
                        f"write them with `raynas data shard imagefolder:SRC {folder.parent if folder.name in ('train', 'test') else folder}`")
    columns: dict[str, list[np.ndarray]] = {"sources": [], "rows": [], "units": [], "labels": []}
    metadata: dict = {}
    units = 0
    for file in files:
        shard = _open(file)
        metadata = metadata or _metadata(shard, file)
        labels = shard.read(columns=["label"]).column("label").to_numpy().astype(np.int64)
        sizes = [shard.metadata.row_group(g).num_rows for g in range(shard.num_row_groups)]
        columns["sources"].append(np.full(len(labels), str(file), dtype=object))
        columns["rows"].append(np.arange(len(labels), dtype=np.int64))
        columns["units"].append(np.repeat(np.arange(units, units + len(sizes), dtype=np.int64), sizes))
        columns["labels"].append(labels)
        units += len(sizes)
    return ShardListing(**{name: np.concatenate(parts) for name, parts in columns.items()}), metadata


def _open(file: Path) -> pq.ParquetFile:
    try:
        shard = pq.ParquetFile(file)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{file}: not a readable Parquet file ({err}); rewrite the shards with `raynas data shard`") from None
    schema = shard.schema_arrow
    image, label = (schema.field(name) if name in schema.names else None for name in ("image", "label"))
    if image is None or label is None or not (pa.types.is_binary(image.type) or pa.types.is_large_binary(image.type)) \
            or not pa.types.is_integer(label.type):
        found = ", ".join(f"{f.name} ({f.type})" for f in schema)
        raise DataError(f"{file}: not a raynas image shard: expected columns image (binary) and label (integer), "
                        f"got {found}")
    return shard


def _metadata(shard: pq.ParquetFile, file: Path) -> dict:
    raw = (shard.schema_arrow.metadata or {}).get(METADATA_KEY)
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError as err:
        raise DataError(f"{file}: the shard's raynas metadata is not JSON ({err})") from None


def read_rows(file: str, rows: np.ndarray) -> list[tuple[bytes, str]]:
    """(encoded bytes, source path) of ``rows`` of one shard, reading only the row groups that hold them."""
    shard = _open(Path(file))
    sizes = np.array([shard.metadata.row_group(g).num_rows for g in range(shard.num_row_groups)])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = np.unique(np.searchsorted(starts, rows, side="right") - 1)
    names = ["image", "path"] if "path" in shard.schema_arrow.names else ["image"]
    try:
        table = shard.read_row_groups([int(g) for g in groups], columns=names)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{file}: cannot read row groups {groups.tolist()} ({err})") from None
    before = np.cumsum(sizes[groups]) - sizes[groups]  # where each read group starts in ``table``
    group_of = np.searchsorted(starts, rows, side="right") - 1
    positions = rows - starts[group_of] + before[np.searchsorted(groups, group_of)]
    picked = table.take(pa.array(positions))
    images = picked.column("image").to_pylist()
    paths = picked.column("path").to_pylist() if "path" in names else [""] * len(images)
    return list(zip(images, paths))
