"""Getting a chosen child out as a folder a user can ship (format ``raynas-child/3``).

Every path writes the same folder through one writer (``raynas.supernet.export.write_child``):

- ``ship_child``: any trained or calibrated child module;
- ``export_calibrated``: BN-calibrate a child of a supernet checkpoint (BigNAS deploys without
  retraining), then ship it; ``export_top_k`` does so for the most accurate calibrated rows of a
  search run;
- ``ship_retrained``: the final checkpoint of ``raynas retrain``;
- ``reship``: copy a child folder, upgrading an older one (given the data it was trained on).

``load_shipped`` gives back the module that takes float images in [0, 1] of any size, and the record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from raynas.checkpoint import META_FILE, LoadedCheckpoint, latest_checkpoint, model_record, read_meta, read_state
from raynas.data import DataSplits, load_data
from raynas.errors import ConfigError
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.logs import Progress, get_logger
from raynas.model_record import DataInfo, ModelRecord
from raynas.results import ResultStore
from raynas.results.report import RunDir
from raynas.space import Arch, SearchSpace
from raynas.supernet import ChildRecord, load_child, read_child_record, with_preprocessing
from raynas.supernet.export import ARCH_FILE, FORMAT, METRICS_FILE, LegacyModel, write_child

logger = get_logger(__name__)

RETRAINED_CHILD_DIR = "model"  # where ``raynas retrain`` ships its child, inside the run folder
CHILD_PREFIX = "child."  # the state-dict prefix of ``FixedChild``, the wrapper retrain trains


def ship_child(
    child: nn.Module, space: SearchSpace, arch: Arch, out_dir: str | os.PathLike[str], data: DataInfo,
    bn_layout: str, metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``child`` (from ``supernet.export(arch)``, trained or calibrated) as a child folder.

    ``data`` gives the classes, channels and normalisation; ``metrics`` (JSON values) go to
    ``metrics.json`` and ``arch.json``. Returns the folder.
    """
    return _ship(child, ModelRecord.of(space, data, bn_layout), arch, out_dir, metrics)


def _ship(child: nn.Module, model: ModelRecord, arch: Arch, out_dir: str | os.PathLike[str],
          metrics: Mapping[str, object] | None) -> Path:
    record = ChildRecord.of(model, arch, metrics)
    out = write_child(out_dir, child, record)
    logger.info("shipped %s -> %s", record.arch, out)
    return out


def load_shipped(path: str | os.PathLike[str]) -> tuple[nn.Module, ChildRecord]:
    """The shipped child behind its preprocessing (float images in [0, 1], any size -> logits),
    in eval mode, and its record. ``module.child`` is the bare child."""
    record = read_child_record(path)
    if record.preprocessing is None:
        raise ConfigError(f"{path} records no preprocessing (format {record.format}); load the bare child with "
                          f"load_child, or re-export it with `raynas export {path} --data DATA --out DIR`")
    child, _, _ = load_child(path)
    return with_preprocessing(child, record.preprocessing), record


def export_calibrated(
    checkpoint: LoadedCheckpoint, arch: Arch, data: DataSplits, out_dir: str | os.PathLike[str],
    calibration: CalibrationConfig = CalibrationConfig(),
) -> dict[str, Any]:
    """Calibrate ``arch``'s BN statistics on ``data``, ship the child, and return its metrics.

    The metrics are top-1, top-5 and loss on the validation split, and the calibration images.
    """
    supernet = checkpoint.supernet
    measured = calibrate_and_evaluate(supernet, arch, data.calib, data.val, data.mean, data.std, calibration)
    metrics = {"arch": checkpoint.space.key(arch), "checkpoint_id": checkpoint.checkpoint_id, "split": "val",
               **measured}
    info = dataclasses.replace(checkpoint.data, mean=tuple(data.mean), std=tuple(data.std))
    ship_child(supernet.export(arch), checkpoint.space, arch, out_dir, info, checkpoint.config.bn_layout, metrics)
    return metrics


def export_top_k(
    checkpoint: LoadedCheckpoint, results: str | os.PathLike[str], k: int, out_dir: str | os.PathLike[str],
    data: str | DataSplits | None = None, calibration: CalibrationConfig = CalibrationConfig(),
) -> list[Path]:
    """Calibrate and ship the ``k`` most accurate calibrated children of ``results`` (a search
    run folder, its ``results/`` store, or a Parquet file), into ``out_dir/<rank>_<short key>/``.

    ``data`` defaults to the checkpoint's dataset, loaded only once the rows are chosen.
    """
    keys = top_calibrated(results, checkpoint.space, k, checkpoint.checkpoint_id)
    if not isinstance(data, DataSplits):
        data = load_data(data or checkpoint.data.spec, seed=checkpoint.config.seed)
    folders = []
    shown = Progress(logger, "exported", len(keys), "children", every_seconds=0)
    for rank, key in enumerate(keys, start=1):
        folder = Path(out_dir) / f"{rank:02d}_{short_key(key)}"
        export_calibrated(checkpoint, checkpoint.space.arch(key), data, folder, calibration)
        folders.append(folder)
        shown.update(rank)
    return folders


def top_calibrated(results: str | os.PathLike[str], space: SearchSpace, k: int, checkpoint_id: str) -> list[str]:
    """Keys of the ``k`` best distinct architectures by calibrated validation accuracy of ``checkpoint_id``."""
    if k < 1:
        raise ConfigError(f"top-k must be >= 1, got {k}")
    rows = _result_rows(Path(results), space)
    calibrated = rows[(rows["evaluator"] == "calibrate") & (rows["status"] == "ok") & rows["accuracy"].notna()]
    if "split" in calibrated.columns:
        calibrated = calibrated[calibrated["split"].isna() | (calibrated["split"] == "val")]
    if calibrated.empty:
        raise ConfigError(f"{results} must have calibrated rows (evaluator 'calibrate', status 'ok', a val accuracy), "
                          f"got none among {len(rows)} rows; evaluators found: {sorted(set(rows['evaluator']))}")
    ours = calibrated[calibrated["checkpoint_id"] == checkpoint_id]
    if ours.empty:
        raise ConfigError(f"{results}: calibrated rows must come from checkpoint {checkpoint_id!r}, "
                          f"got checkpoints {sorted(set(calibrated['checkpoint_id'].dropna()))}")
    best = ours.groupby("arch")["accuracy"].max().reset_index().sort_values(["accuracy", "arch"],
                                                                            ascending=[False, True])
    return best["arch"].head(k).tolist()


def short_key(key: str) -> str:
    """A file-name-safe stand-in for an architecture key (the full key is in arch.json)."""
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def ship_retrained(checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Ship the child of a ``raynas retrain`` checkpoint, with its validation accuracy."""
    folder = Path(checkpoint)
    meta = read_meta(folder)
    if not meta.get("fixed_arch"):
        raise ConfigError(f"{folder} must be a retrained child's checkpoint (meta.json with fixed_arch), got a "
                          f"supernet checkpoint; export one of its children with --arch KEY")
    record = model_record(meta, str(folder / META_FILE))
    space = record.space
    arch = space.arch(meta["fixed_arch"])
    state = read_state(folder)["model"]
    child = record.build().export(arch)
    try:
        child.load_state_dict({k.removeprefix(CHILD_PREFIX): v for k, v in state.items()})
    except RuntimeError as err:
        raise ConfigError(f"{folder}: the weights must match the recorded child {space.key(arch)!r}; "
                          f"{str(err).splitlines()[0]}") from None
    history = meta.get("metrics") or [{}]
    metrics = {"arch": space.key(arch), "accuracy": history[-1].get("val_accuracy"), "split": "val",
               "epochs": meta.get("epoch"), "train_seconds": sum(m.get("epoch_seconds", 0.0) for m in history),
               "checkpoint": str(folder)}
    return _ship(child, record, arch, out_dir, metrics)


def reship(source: str | os.PathLike[str], out_dir: str | os.PathLike[str], data: DataInfo | None = None) -> Path:
    """Write the child folder ``source`` again into ``out_dir`` in the current format.

    An older folder (``raynas-child/1`` or ``/2``) records no data description, which the
    current format holds: ``data`` (the dataset the child was trained on) supplies it. The
    folder's own normalisation wins over ``data``'s: its preprocessing, or the mean and std
    a ``raynas-child/1`` metrics.json recorded.
    """
    folder = Path(source)
    record = read_child_record(folder)
    child, _, _ = load_child(folder)
    if record.legacy is not None:
        record = _upgraded(record, record.legacy, folder, data)
    return write_child(out_dir, child, record)


def _upgraded(record: ChildRecord, legacy: LegacyModel, folder: Path, data: DataInfo | None) -> ChildRecord:
    """``record`` of an older folder as a current one: its model record made from ``data``."""
    if data is None:
        raise ConfigError(f"{folder} is a {legacy.format} folder: it records no data description, and a {FORMAT} "
                          f"folder needs one; give the dataset the child was trained on "
                          f"(`raynas export {folder} --data DATA --out DIR`)")
    old = _legacy_metrics(folder)
    if legacy.preprocessing is not None:
        data = dataclasses.replace(data, mean=legacy.preprocessing.mean, std=legacy.preprocessing.std)
    elif {"mean", "std"} <= old.keys():
        data = dataclasses.replace(data, mean=tuple(old["mean"]), std=tuple(old["std"]))
    metrics = record.metrics or {k: v for k, v in old.items() if k not in ("mean", "std")}
    return ChildRecord.of(ModelRecord.of(legacy.space, data, legacy.bn_layout), legacy.space.arch(dict(record.dims)),
                          metrics)


def resolve_source(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """What ``raynas export`` was given: ("child", folder), ("retrained", checkpoint) or
    ("supernet", checkpoint). A run folder stands for its shipped child or latest checkpoint."""
    folder = Path(path)
    if not folder.exists():
        raise ConfigError(f"export source {folder} does not exist")
    if (folder / ARCH_FILE).is_file():
        return "child", folder
    if (folder / META_FILE).is_file():
        return ("retrained" if read_meta(folder).get("fixed_arch") else "supernet"), folder
    if (folder / RETRAINED_CHILD_DIR / ARCH_FILE).is_file():
        return "child", folder / RETRAINED_CHILD_DIR
    latest = latest_checkpoint(folder) if folder.is_dir() else None
    if latest is not None:
        return resolve_source(latest)
    raise ConfigError(f"export source {folder} must be a child folder ({ARCH_FILE}), a checkpoint ({META_FILE}) "
                      f"or a run folder with checkpoint_* folders; it is none of these")


def _result_rows(results: Path, space: SearchSpace) -> pd.DataFrame:
    if results.is_file():
        return pd.read_parquet(results)
    if not results.is_dir():
        raise ConfigError(f"results {results} does not exist (a search run folder, its results/ or a Parquet file)")
    store = RunDir(results).results if RunDir(results).results.is_dir() else results
    rows = ResultStore(store, space).to_pandas()
    if rows.empty:
        raise ConfigError(f"results {results} must hold result rows, got none in {store}")
    return rows


def _legacy_metrics(folder: Path) -> dict[str, Any]:
    path = folder / METRICS_FILE
    try:
        values = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        logger.warning("%s: malformed JSON, metrics not carried over", path)
        return {}
    return values if isinstance(values, dict) else {}
