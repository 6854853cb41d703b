"""Shared pieces of the commands that read a checkpoint: architectures in, one Parquet file out."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from raynas.cli.common import positive_int
from raynas.data import DataSplits, load_data
from raynas.errors import ArchError, ConfigError
from raynas.estimate import DEPTH_RULES
from raynas.model_record import DataInfo, ModelRecord
from raynas.results import rows_to_table
from raynas.search.pool import UntrainedSupernet
from raynas.space import Arch, SearchSpace
from raynas.train import LoadedCheckpoint

ARCH_TABLES: dict[str, tuple[str, Callable[[Path], pd.DataFrame]]] = {
    ".csv": ("CSV", pd.read_csv), ".parquet": ("Parquet", pd.read_parquet)}
"""Suffix -> (format name, reader) of the architecture tables ``--archs`` accepts; other files are text."""


def add_depth_rule(parser: argparse.ArgumentParser) -> None:
    """``--depth-rule``: how the BN indicator combines op scores; default: the space's (``default_depth_rule``)."""
    parser.add_argument("--depth-rule", choices=DEPTH_RULES, default=None,
                        help="BN indicator over a child's ops: sum (BN-NAS) or mean; default: mean on spaces "
                             "with elastic depth, sum elsewhere")


def add_arch_selection(parser: argparse.ArgumentParser, allow_all: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    if allow_all:
        group.add_argument("--all", action="store_true", help="every architecture of the space (small spaces)")
    group.add_argument("--sample", type=positive_int, help="N architectures sampled uniformly (seeded by --seed)")
    group.add_argument("--archs", type=Path, help="keys, one per line, or a CSV/Parquet file with an `arch` column")
    parser.add_argument("--seed", type=int, default=0)


def select_archs(args: argparse.Namespace, space: SearchSpace) -> list[Arch]:
    if getattr(args, "all", False):
        return list(space.enumerate())
    if args.sample is not None:
        return space.from_index_matrix(space.sample_index_matrix(args.sample, seed=args.seed))
    return read_arch_file(args.archs, space)


def read_arch_file(path: Path, space: SearchSpace) -> list[Arch]:
    """The architectures a file names; an unreadable or empty file is refused before anything is written."""
    if not path.is_file():
        raise ConfigError(f"architecture file {path} does not exist")
    try:
        frame = _read_arch_table(path)
    except (ValueError, OSError) as err:  # pandas, pyarrow or decoding errors: the file is not what it says
        kind = ARCH_TABLES[path.suffix][0] if path.suffix in ARCH_TABLES else "text"
        detail = " ".join(str(err).split())
        raise ConfigError(f"{path}: not a readable {kind} file of architecture keys ({detail})") from err
    if "arch" not in frame.columns:
        raise ConfigError(f"{path} has no `arch` column; columns: {list(frame.columns)}")
    if frame.empty:
        raise ConfigError(f"{path}: no architecture keys; expected an `arch` column with rows, or one key per line")
    try:
        return [space.arch(key) for key in frame["arch"].astype(str)]
    except ArchError as err:
        raise ArchError(f"{path}: {err}") from err


def _read_arch_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet table as it is; a text file as one `arch` column (blank and # lines skipped)."""
    if path.suffix in ARCH_TABLES:
        return ARCH_TABLES[path.suffix][1](path)
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return pd.DataFrame({"arch": lines})


def checkpoint_data(checkpoint: LoadedCheckpoint, spec: str | None) -> DataSplits:
    """The checkpoint's own dataset (same seed, so calibration images never overlap training)."""
    return load_data(spec or checkpoint.data.spec, seed=checkpoint.config.seed)


def space_at_init(space: SearchSpace, spec: str, seed: int) -> tuple[UntrainedSupernet, DataSplits]:
    """``space``'s supernet at initialisation and the data it reads: the split and the weights drawn by ``seed``."""
    data = load_data(spec, seed=seed)
    return UntrainedSupernet(ModelRecord.of(space, DataInfo.of(data)), seed), data


def write_rows(rows: list[dict[str, Any]], space: SearchSpace, out: Path) -> Path:
    """One closed Parquet file with the results schema, moved into place atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    pq.write_table(rows_to_table(rows, space), tmp)
    os.replace(tmp, out)
    return out


def common_fields(checkpoint: LoadedCheckpoint, run_id: str, seed: int) -> dict[str, Any]:
    return {"run_id": run_id, "checkpoint_id": checkpoint.checkpoint_id, "seed": seed}
