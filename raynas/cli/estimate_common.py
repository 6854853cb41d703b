"""Shared pieces of the commands that read a checkpoint: architectures in, one Parquet file out."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from raynas.data import DataSplits, load_data
from raynas.errors import ConfigError
from raynas.estimate import DEPTH_RULES
from raynas.results import rows_to_table
from raynas.space import Arch, SearchSpace
from raynas.train import LoadedCheckpoint


def add_depth_rule(parser: argparse.ArgumentParser) -> None:
    """``--depth-rule``: how the BN indicator combines op scores; default: the space's (``default_depth_rule``)."""
    parser.add_argument("--depth-rule", choices=DEPTH_RULES, default=None,
                        help="BN indicator over a child's ops: sum (BN-NAS) or mean; default: mean on spaces "
                             "with elastic depth, sum elsewhere")


def add_arch_selection(parser: argparse.ArgumentParser, allow_all: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    if allow_all:
        group.add_argument("--all", action="store_true", help="every architecture of the space (small spaces)")
    group.add_argument("--sample", type=int, help="N architectures sampled uniformly (seeded by --seed)")
    group.add_argument("--archs", type=Path, help="keys, one per line, or a CSV/Parquet file with an `arch` column")
    parser.add_argument("--seed", type=int, default=0)


def select_archs(args: argparse.Namespace, space: SearchSpace) -> list[Arch]:
    if getattr(args, "all", False):
        return list(space.enumerate())
    if args.sample is not None:
        if args.sample < 1:
            raise ConfigError(f"--sample must be >= 1, got {args.sample}")
        return space.from_index_matrix(space.sample_index_matrix(args.sample, seed=args.seed))
    return read_arch_file(args.archs, space)


def read_arch_file(path: Path, space: SearchSpace) -> list[Arch]:
    if not path.is_file():
        raise ConfigError(f"architecture file {path} does not exist")
    if path.suffix in (".parquet", ".csv"):
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        if "arch" not in frame.columns:
            raise ConfigError(f"{path} has no `arch` column; columns: {list(frame.columns)}")
        keys = frame["arch"].astype(str).tolist()
    else:
        keys = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [space.arch(key) for key in keys]


def checkpoint_data(checkpoint: LoadedCheckpoint, spec: str | None) -> DataSplits:
    """The checkpoint's own dataset (same seed, so calibration images never overlap training)."""
    return load_data(spec or checkpoint.data.spec, seed=checkpoint.config.seed)


def write_rows(rows: list[dict[str, Any]], space: SearchSpace, out: Path) -> Path:
    """One closed Parquet file with the results schema, moved into place atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    pq.write_table(rows_to_table(rows, space), tmp)
    os.replace(tmp, out)
    return out


def common_fields(checkpoint: LoadedCheckpoint, run_id: str, seed: int) -> dict[str, Any]:
    return {"run_id": run_id, "checkpoint_id": checkpoint.checkpoint_id, "seed": seed}
