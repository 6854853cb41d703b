"""Proxy evaluation: train each architecture on its own under a cheap setting, record its val top-1.

Zheng et al. (CVPR 2020) rank architectures by a standalone proxy training (``ProxySetting``)
and measure how well that ranking agrees with the full-budget one. ``proxy_evaluate``:

1. builds every child directly at the proxy's channels and cells per stage (``proxy_child_space``:
   the NAS-Bench-201 skeleton rewritten, the cell unchanged, so every key maps onto itself);
2. packs the first ``train_images`` of the seeded training split and the validation split (both
   carved from the training pool by ``load_data``; the test split is never read), resized once
   to the proxy resolution, and puts them in Ray's object store once;
3. trains each architecture with ``fit_child`` in its own Ray task (1 CPU, or 1 GPU), all from
   the same seed, and records the validation top-1 (``proxy_accuracy``), the training speed
   (``tse``: the sum of every minibatch loss; ``tse_e``: those of the last epoch; Ru et al.,
   NeurIPS 2021, ``raynas.train.speed``) and the task's wall seconds and CPU seconds of
   training plus evaluation;
4. writes the rows to ``OUT/proxy.parquet`` as each task finishes (temp file, then
   ``os.replace``), so an interrupted run loses only the architectures in flight.

**Resuming.** A row belongs to a proxy by its space, data and every setting key (``IDENTITY``).
Architectures that already have a row for the same proxy are not trained again; rows of other
settings stay in the file. A child whose loss went non-finite is a row with status ``error``
and a NaN accuracy: the same seed would diverge again, so it is not retried either.

**Ranking.** ``rank_by`` picks the score (``RANK_BY``): ``accuracy``, ``tse`` or ``tse_e``; the
loss sums are negated (``proxy_scores``), so higher is better for all three.
"""

from __future__ import annotations

import functools
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch
import torch.nn.functional as F

from raynas.bpe.evaluate import rank_correlation
from raynas.bpe.proxy_setting import KEYS, ProxySetting
from raynas.bpe.reference import (
    Reference,
    _listed,
    _parse_accuracy,
    _parse_archs,
    _read,
)
from raynas.bpe.space import score_column, standalone_families
from raynas.data import DataSplits, load_data
from raynas.errors import ConfigError, TrainingError
from raynas.logs import Progress, get_logger
from raynas.ray_env import POLL_SECONDS, check_resources, ensure_ray
from raynas.results.schema import conform
from raynas.space import Arch, SearchSpace, family, space_from_dict
from raynas.train import TrainConfig
from raynas.train.data_feed import pack_splits
from raynas.train.speed import LOWER_IS_BETTER, check_rank_by
from raynas.train.standalone import fit_child

logger = get_logger(__name__)
PROXY_FILE = "proxy.parquet"
SCHEMA_VERSION = "2"
OK = "ok"
ERROR = "error"
IDENTITY = ("space", "data", *KEYS)
"""Columns that name the proxy a row was trained under; equal values: no need to train again."""

PROXY_SCHEMA = pa.schema(
    [
        pa.field("arch", pa.string()), pa.field("proxy_accuracy", pa.float64()), pa.field("seconds", pa.float64()),
        pa.field("cpu_seconds", pa.float64()),
        pa.field("train_loss", pa.float64()), pa.field("tse", pa.float64()), pa.field("tse_e", pa.float64()),
        pa.field("status", pa.string()), pa.field("error", pa.string()),
        pa.field("space", pa.string()), pa.field("data", pa.string()), pa.field("train_images", pa.int64()),
        pa.field("val_images", pa.int64()), pa.field("device", pa.string()),
        pa.field("channels", pa.int64()), pa.field("cells_per_stage", pa.int64()), pa.field("resolution", pa.int64()),
        pa.field("epochs", pa.int64()), pa.field("batch_size", pa.int64()), pa.field("lr", pa.float64()),
        pa.field("data_fraction", pa.float64()), pa.field("weight_decay", pa.float64()),
        pa.field("augment", pa.bool_()), pa.field("cutout", pa.int64()), pa.field("amp", pa.string()),
        pa.field("seed", pa.int64()),
    ],
    metadata={b"raynas.proxy.schema_version": SCHEMA_VERSION.encode()},
)
"""One row per (architecture, proxy). Versioned: a reader checks ``raynas.proxy.schema_version``."""
ADDED_COLUMNS = {"cutout": 0, "amp": "off", "tse": None, "tse_e": None}
"""Columns added to schema 2 later, with what a row written before them holds there: the setting
it trained under, or no training speed (it was not recorded)."""

Row = dict[str, Any]


# --- the proxy network and data ---------------------------------------------------------------
def proxy_child_space(space: SearchSpace, setting: ProxySetting) -> SearchSpace:
    """``space`` with the setting's channels, cells per stage and resolution (``Family.proxy_child``).

    A MobileNet space has no cells per stage (depth is a choice of each child), so there is no
    faithful map for it yet; a family without a rewrite is refused rather than approximated.
    """
    rewrite = family(space.family).load("proxy_child")
    if rewrite is None:
        raise ConfigError(f"proxy supports {standalone_families()} spaces for now; space {space.name!r} is "
                          f"family {space.family!r}")
    name = f"{space.name}@c{setting.channels}-n{setting.cells_per_stage}-r{setting.resolution}"
    definition = rewrite(space.definition, setting.channels, setting.cells_per_stage, setting.resolution)
    return space_from_dict({**definition, "name": name}, source=f"{space.source} (proxy)", default_name=name)


def proxy_train_config(setting: ProxySetting, train_images: int) -> TrainConfig:
    """Standalone training of one child under ``setting`` (``train_child`` forces full mode)."""
    return TrainConfig(mode="full", epochs=setting.epochs, batch_size=setting.batch_size, lr=setting.lr,
                       weight_decay=setting.weight_decay, augment=setting.augment, cutout=setting.cutout,
                       amp=setting.amp, seed=setting.seed,
                       train_images=train_images, log_every_epoch=False)


def pack_proxy_data(data: DataSplits, setting: ProxySetting) -> dict[str, Any]:
    """``pack_splits`` of the proxy's share of the training split, resized once to its resolution.

    Resizing here, not per batch, is what makes the resolution act: the training loop feeds an
    nb201 child at the size of its images. It also shrinks what every task copies.
    """
    n = setting.train_images(len(data.train))
    if n < setting.batch_size:
        raise ConfigError(f"batch_size {setting.batch_size} is larger than the {n} training images of {data.name}: "
                          "no training step would run; lower batch_size")
    packed = pack_splits(data, n)
    for split in ("train_images", "val_images"):
        packed[split] = resized(torch.from_numpy(packed[split]), setting.resolution).numpy()
    packed["info"] = {**packed["info"], "image_size": setting.resolution}
    return packed


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) at ``size`` x ``size`` (bilinear, antialiased, as ``to_model_input``)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(4096):
        x = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


# --- the result file --------------------------------------------------------------------------
def read_proxy_rows(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every row of ``OUT/proxy.parquet`` (no file: no rows), checked against ``PROXY_SCHEMA``."""
    path = Path(out_dir) / PROXY_FILE
    if not path.is_file():
        return PROXY_SCHEMA.empty_table().to_pandas()
    table = pq.read_table(path)
    version = (table.schema.metadata or {}).get(b"raynas.proxy.schema_version", b"?").decode()
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{path}: proxy schema version {version}, this raynas reads {SCHEMA_VERSION}; "
                          "choose a new output folder")
    return conform(table, PROXY_SCHEMA, ADDED_COLUMNS).to_pandas()


def write_proxy_rows(path: Path, rows: Sequence[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    pq.write_table(pa.Table.from_pylist(list(rows), schema=PROXY_SCHEMA), tmp)
    os.replace(tmp, path)


def proxy_identity(space: SearchSpace, data_name: str, setting: ProxySetting) -> Row:
    """The ``IDENTITY`` values of rows trained on ``data_name`` under ``setting``: rows with equal
    values need no training again, and a proxy search with other values is another search."""
    return {"space": space.name, "data": data_name, **setting.to_dict()}


def _same_proxy(frame: pd.DataFrame, identity: Row) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column in IDENTITY:
        mask &= frame[column] == identity[column]
    return mask


# --- evaluation -------------------------------------------------------------------------------
def proxy_evaluate(
    space: SearchSpace,
    archs: Sequence[Arch | str],
    setting: ProxySetting,
    data: str | DataSplits,
    out_dir: str | os.PathLike[str],
    *,
    address: str | None = None,
    use_gpu: bool = False,
    cpus_per_arch: float = 1.0,
    on_row: Callable[[Row], None] | None = None,
) -> pd.DataFrame:
    """Train every architecture standalone under ``setting``; one row per architecture, in order.

    ``data`` is a DATA string (loaded with the setting's seed, only if something is left to
    train) or splits loaded with that seed; its name is part of the proxy's identity. Architectures
    that ``OUT/proxy.parquet`` already holds for this proxy are not trained again. ``on_row``
    sees each new row as its task finishes. Everything that can be checked is checked before
    Ray starts.
    """
    keys = list(dict.fromkeys(space.key(space.arch(a)) for a in archs))
    if not keys:
        raise ConfigError("no architectures to evaluate")
    proxy = proxy_child_space(space, setting)
    identity = proxy_identity(space, data if isinstance(data, str) else data.name, setting)
    path = Path(out_dir) / PROXY_FILE
    stored = read_proxy_rows(out_dir)
    done = set(stored.loc[_same_proxy(stored, identity), "arch"])
    rows = cast(list[Row], stored.astype(object).where(stored.notna(), None).to_dict("records"))
    todo = [k for k in keys if k not in done]
    if todo:
        splits = load_data(data, seed=setting.seed) if isinstance(data, str) else data
        packed = pack_proxy_data(splits, setting)
        ensure_ray(address)
        check_resources(1, cpus_per_arch, 1.0 if use_gpu else 0.0)
        base = {**identity, "train_images": len(packed["train_labels"]), "val_images": len(packed["val_labels"]),
                "device": "cuda" if use_gpu else "cpu"}
        progress = Progress(logger, "proxy trained", len(todo), "archs", every_seconds=0)
        for trained, row in enumerate(_train_all(proxy, todo, packed, proxy_train_config(setting, base["train_images"]),
                                              use_gpu, cpus_per_arch), start=1):
            rows.append({**base, **row})
            write_proxy_rows(path, rows)
            progress.update(trained, f"{row['arch']} proxy_accuracy {row['proxy_accuracy']:.4f} in {row['seconds']:.1f} s")
            if on_row is not None:
                on_row(rows[-1])
    frame = pd.DataFrame(rows, columns=PROXY_SCHEMA.names)
    mine = frame[_same_proxy(frame, identity)].drop_duplicates("arch", keep="last").set_index("arch")
    return mine.loc[keys].reset_index()[PROXY_SCHEMA.names]


def _train_all(proxy: SearchSpace, keys: list[str], packed: dict[str, Any], config: TrainConfig, use_gpu: bool,
               cpus: float, may_start: Callable[[int], bool] = lambda in_flight: True,
               slots: int | None = None) -> Iterator[Row]:
    """Yield one row per key as its Ray task finishes, keys started in order, at most ``slots`` at a
    time (default: all), each only when ``may_start(tasks in flight)`` agrees; when it refuses with
    none in flight, the rest are left untrained. Tasks still running are cancelled on exit."""
    task = _train_one.options(num_cpus=0 if use_gpu else cpus, num_gpus=1 if use_gpu else 0)
    data_ref = ray.put(packed)
    device, threads = "cuda" if use_gpu else "cpu", max(1, int(cpus))
    queue, limit = list(keys), len(keys) if slots is None else max(1, slots)
    pending: dict[ray.ObjectRef, str] = {}
    try:
        while queue or pending:
            while queue and len(pending) < limit and may_start(len(pending)):
                key = queue.pop(0)
                pending[task.remote(proxy, key, data_ref, config, device, threads)] = key
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                yield {"arch": pending.pop(ref), **ray.get(ref)}
    finally:
        for ref in pending:
            ray.cancel(ref)


@ray.remote
def _train_one(proxy: SearchSpace, key: str, packed: dict[str, Any], config: TrainConfig, device: str,
               threads: int) -> Row:
    torch.set_num_threads(threads)
    return train_proxy(proxy, key, packed, config, device)


def train_proxy(proxy: SearchSpace, key: str, packed: dict[str, Any], config: TrainConfig, device: str) -> Row:
    """Train one architecture of the proxy space in this process: its accuracy, loss, training
    speed, status, wall seconds and CPU seconds (this process's, all threads: what a CPU budget
    counts, unmoved by other processes sharing the machine)."""
    _warm_up()
    started, cpu = time.perf_counter(), time.process_time()
    try:
        fitted = fit_child(proxy, proxy.arch(key), packed, config, device)
        row = {"proxy_accuracy": fitted["val_accuracy"], "train_loss": fitted["train_loss"], "tse": fitted["tse"],
               "tse_e": fitted["tse_e"], "status": OK, "error": None}
    except TrainingError as err:
        row = {"proxy_accuracy": math.nan, "train_loss": math.nan, "tse": math.nan, "tse_e": math.nan,
               "status": ERROR, "error": str(err)}
    return {**row, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


@functools.cache
def _warm_up() -> None:
    """The first optimizer of a process imports ``torch._dynamo`` (about 3 s on CPU): a cost of
    the worker, not of the architecture it happens to train first, so it is kept out of ``seconds``."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


# --- against a reference ranking --------------------------------------------------------------
def load_reference_column(path: str | os.PathLike[str], space: SearchSpace, column: str = "accuracy") -> Reference:
    """A reference table whose true accuracy is ``column`` (``load_reference`` reads ``accuracy``).

    The same checks as ``load_reference``: architectures of ``space``, finite accuracies,
    no duplicates; errors name the file, the column and the rows.
    """
    file = Path(path)
    frame = _read(file)
    missing = [c for c in ("arch", column) if c not in frame.columns]
    if missing:
        raise ConfigError(f"{file.name}: missing column(s) {missing}; a reference table needs an `arch` column and "
                          f"the accuracy column {column!r}, got {list(frame.columns)}")
    archs, keys = _parse_archs(frame["arch"], space, file.name)
    accuracy = _parse_accuracy(frame[column], keys, file.name)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(f"{file.name}: architecture(s) listed more than once: {_listed(duplicates)}")
    return Reference(space.name, tuple(archs), tuple(keys), tuple(accuracy), file.name)


def check_reference_covers(reference: Reference, keys: Sequence[str]) -> None:
    """Every key must have a reference accuracy, or the correlation would silently drop it."""
    known = set(reference.keys)
    missing = [k for k in keys if k not in known]
    if missing:
        raise ConfigError(f"{reference.source}: {len(missing)} architecture(s) to evaluate have no reference "
                          f"accuracy: {_listed(missing)}")


def proxy_scores(rows: pd.DataFrame, rank_by: str = "accuracy") -> pd.Series:
    """The ``rank_by`` score of each row, higher = better: ``proxy_accuracy``, or a training speed
    negated (a lower loss sum predicts a better architecture). NaN where a row has none."""
    values = rows[score_column(check_rank_by(rank_by))].astype(float)
    return -values if rank_by in LOWER_IS_BETTER else values


def rank_against(rows: pd.DataFrame, reference: Reference, rank_by: str = "accuracy") -> dict[str, float]:
    """Kendall tau and Spearman rho of the ``rank_by`` score against the reference, over the rows
    with a finite score; NaN with fewer than two, or when either side is constant."""
    truth = dict(zip(reference.keys, reference.accuracy))
    scores = proxy_scores(rows, rank_by)
    ok = scores.notna()
    if ok.sum() < 2:
        return {"archs": float(ok.sum()), "kendall_tau": math.nan, "spearman_rho": math.nan}
    tau, rho = rank_correlation(scores[ok].to_numpy(float), rows.loc[ok, "arch"].map(truth).to_numpy(float))
    return {"archs": float(ok.sum()), "kendall_tau": tau, "spearman_rho": rho}
