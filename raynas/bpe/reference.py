"""The reference ranking that BPE trials are scored against: architecture -> true accuracy.

A reference table is a Parquet or CSV file with the columns ``arch`` (canonical keys of the
target space) and ``accuracy`` (higher is better; any scale); other columns are ignored.
``make_reference`` builds one by training every architecture standalone with ``retrain``, one
Ray task per architecture.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from raynas.data import DataSplits, load_data
from raynas.errors import ArchError, ConfigError
from raynas.ray_env import ensure_ray
from raynas.space import Arch, SearchSpace
from raynas.train import Scaling, TrainConfig, retrain

COLUMNS = ("arch", "accuracy")
MIN_ARCHS = 3
SHOWN = 10
"""Offending rows named in one error message; the rest are counted."""


@dataclass(frozen=True)
class Reference:
    """Architectures of one space with their true accuracy, in table order."""

    space_name: str
    archs: tuple[Arch, ...]
    keys: tuple[str, ...]
    accuracy: tuple[float, ...]
    source: str = "<memory>"
    seconds: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return len(self.archs)

    def select(self, keys: Sequence[str]) -> "Reference":
        """The rows of ``keys`` only, in that order; a key not in the table is an error."""
        index = {key: i for i, key in enumerate(self.keys)}
        missing = [key for key in keys if key not in index]
        if missing:
            raise ConfigError(f"{self.source}: reference_archs not in the reference table: {_listed(missing)}")
        rows = [index[key] for key in keys]
        return Reference(self.space_name, tuple(self.archs[i] for i in rows), tuple(keys),
                         tuple(self.accuracy[i] for i in rows), self.source,
                         None if self.seconds is None else tuple(self.seconds[i] for i in rows))

    def to_table(self) -> pa.Table:
        columns: dict[str, Any] = {"arch": list(self.keys), "accuracy": list(self.accuracy)}
        if self.seconds is not None:
            columns["train_seconds"] = list(self.seconds)
        return pa.table(columns)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write as Parquet (``.parquet``) or CSV (any other suffix): temp file, then ``os.replace``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
        if target.suffix == ".parquet":
            pq.write_table(self.to_table(), tmp)
        else:
            self.to_table().to_pandas().to_csv(tmp, index=False)
        os.replace(tmp, target)
        return target


def load_reference(path: str | os.PathLike[str], space: SearchSpace) -> Reference:
    """Read and validate a reference table for ``space``.

    Errors name the file and the offending rows (1-based, header excluded): architectures that
    are not in the space, missing or non-finite accuracies, duplicates.
    """
    file = Path(path)
    frame = _read(file)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{file.name}: missing column(s) {missing}; a reference table needs columns {list(COLUMNS)}, "
                          f"got {list(frame.columns)}")
    archs, keys = _parse_archs(frame["arch"], space, file.name)
    accuracy = _parse_accuracy(frame["accuracy"], keys, file.name)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(f"{file.name}: architecture(s) listed more than once: {_listed(duplicates)}")
    if len(keys) < MIN_ARCHS:
        raise ConfigError(f"{file.name}: a rank correlation needs at least {MIN_ARCHS} architectures, got {len(keys)}")
    return Reference(space.name, tuple(archs), tuple(keys), tuple(accuracy), file.name)


def _read(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise ConfigError(f"{file}: reference table not found (expected a .parquet or .csv file)")
    try:
        if file.suffix in (".parquet", ".pq"):
            return pq.read_table(file).to_pandas()
        return pd.read_csv(file, dtype={"arch": "string"}, keep_default_na=True)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise ConfigError(f"{file.name}: cannot read the reference table: {err}") from err


def _parse_archs(column: pd.Series, space: SearchSpace, name: str) -> tuple[list[Arch], list[str]]:
    archs, keys, bad = [], [], []
    for row, value in enumerate(column.tolist(), start=1):
        try:
            if not isinstance(value, str) or not value.strip():
                raise ArchError(f"the arch key is missing ({value!r})")
            arch = space.arch(value.strip())
        except ArchError as err:
            bad.append(f"row {row} {value!r}: {err}")
            continue
        archs.append(arch)
        keys.append(space.key(arch))
    if bad:
        raise ArchError(f"{name}: {len(bad)} architecture(s) are not in space {space.name!r}: {_listed(bad)}")
    return archs, keys


def _parse_accuracy(column: pd.Series, keys: list[str], name: str) -> list[float]:
    values = pd.to_numeric(column, errors="coerce").tolist()
    raw = column.tolist()
    bad = [f"row {row} ({keys[row - 1]}): accuracy {raw[row - 1]!r}"
           for row, value in enumerate(values, start=1) if value is None or not math.isfinite(value)]
    if bad:
        raise ConfigError(f"{name}: {len(bad)} row(s) have a missing, NaN or non-numeric accuracy: {_listed(bad)}")
    return [float(v) for v in values]


def _listed(items: Sequence[str]) -> str:
    shown = "; ".join(str(i) for i in items[:SHOWN])
    return shown + (f"; ... and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


# --- building a reference ---------------------------------------------------------------------
def make_reference(
    space: SearchSpace,
    archs: Sequence[Arch],
    data: str | DataSplits,
    config: TrainConfig,
    out_dir: str | os.PathLike[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    address: str | None = None,
    use_gpu: bool = False,
    keep_runs: bool = False,
) -> Reference:
    """Train every architecture from scratch (``retrain``, full mode) and record its val accuracy.

    One Ray task per architecture (1 CPU, or 1 GPU with ``use_gpu``), so the reference trains in
    parallel on the machine or cluster. Run folders go under ``out_dir`` (a temporary folder by
    default) and are deleted unless ``keep_runs``. ``path`` also writes the table (CSV/Parquet).
    """
    if len(archs) < MIN_ARCHS:
        raise ConfigError(f"a reference needs at least {MIN_ARCHS} architectures, got {len(archs)}")
    archs = [space.arch(a) for a in archs]
    ensure_ray(address)
    splits = load_data(data, seed=config.seed) if isinstance(data, str) else data
    runs = Path(out_dir) if out_dir is not None else Path(os.environ.get("TMPDIR", "/tmp")) / "raynas-reference"
    runs = runs / f"reference-{uuid.uuid4().hex[:8]}"
    task = _retrain_task.options(num_cpus=0 if use_gpu else 1, num_gpus=1 if use_gpu else 0)
    data_ref = ray.put(splits)
    refs = [task.remote(space, arch, data_ref, config, use_gpu, str(runs), f"arch-{i:03d}")
            for i, arch in enumerate(archs)]
    try:
        results = ray.get(refs)
    finally:
        if not keep_runs:
            shutil.rmtree(runs, ignore_errors=True)
    reference = Reference(space.name, tuple(archs), tuple(space.key(a) for a in archs),
                          tuple(accuracy for accuracy, _ in results), "make_reference",
                          tuple(seconds for _, seconds in results))
    if path is not None:
        reference.write(path)
    return reference


@ray.remote
def _retrain_task(space: SearchSpace, arch: Arch, data: DataSplits, config: TrainConfig, use_gpu: bool,
                  runs: str, name: str) -> tuple[float, float]:
    started = time.perf_counter()
    result = retrain(space, arch, data, config.replace(log_every_epoch=False), Scaling(0, use_gpu=use_gpu), runs, name)
    return float(result.metrics[-1]["val_accuracy"]), time.perf_counter() - started
