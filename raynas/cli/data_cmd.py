"""Prepare datasets: `raynas data shard imagefolder:ROOT OUT` writes Parquet shards for streaming."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from raynas.cli.common import positive_int
from raynas.data.shards import ROW_GROUP_ROWS, ROWS_PER_SHARD, write_shards
from raynas.errors import DataError


def add(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True)
    shard = sub.add_parser("shard", help="write an ImageFolder tree as Parquet shards (image bytes + label)")
    shard.add_argument("source", help="imagefolder:ROOT")
    shard.add_argument("out", type=Path, help="new folder for OUT/train/*.parquet (and OUT/test/*.parquet)")
    shard.add_argument("--rows-per-shard", type=positive_int, default=ROWS_PER_SHARD, help="images per file")
    shard.add_argument("--row-group-rows", type=positive_int, default=ROW_GROUP_ROWS,
                       help="images per row group (what a reader fetches at once)")
    shard.add_argument("--seed", type=int, default=0, help="seed of the order images are written in")


def run(args: argparse.Namespace) -> int:
    kind, _, root = args.source.partition(":")
    if kind != "imagefolder" or not root:
        raise DataError(f"raynas data shard reads imagefolder:ROOT, got {args.source!r}")
    started = time.perf_counter()
    counts = write_shards(root, args.out, args.rows_per_shard, args.row_group_rows, args.seed)
    written = ", ".join(f"{count} {split}" for split, count in counts.items())
    print(f"wrote {written} images to {args.out} in {time.perf_counter() - started:.1f}s; "
          f"train on them with --data shards:{args.out}")
    return 0
