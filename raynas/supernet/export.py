"""Save an exported child as a folder a user can ship, and load it back.

A child folder (format ``raynas-child/3``)::

    arch.json     the ChildRecord: the ``ModelRecord`` under "model" (space definition, data:
                  classes, channels, image size, normalisation, hflip; BN layout), then what is
                  this child's own: arch key and dims, resolution, preprocessing (derived from
                  the record's data; checked on load), metrics and the file list; written last,
                  so a folder with arch.json is complete
    weights.pt    the child's state dict (rebuild it with ``load_child``)
    metrics.json  the metrics the exporter passed (accuracy and its split, seconds, ...)
    model.ts      TorchScript: float images in [0, 1], (N, C, H, W) of any size -> logits;
                  needs only torch (``torch.jit.load``)
    model.pt2     the same program as ``torch.export`` (``torch.export.load(path).module()``)

``raynas-child/1`` (arch.json and weights.pt only) and ``raynas-child/2`` folders (space,
classes, channels and BN layout as flat keys; programs only when mean and std were known)
still load. They record no data description, so their ``ChildRecord.model`` is None and a
``LegacyModel`` rebuilds them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import torch
from torch import nn

from raynas.errors import ConfigError
from raynas.model_record import DataInfo, ModelRecord
from raynas.safe_load import load_weights
from raynas.space import Arch, SearchSpace, space_from_dict
from raynas.supernet._programs import PROGRAM_FILES, PreprocessedChild, build_programs
from raynas.supernet.base import Supernet
from raynas.supernet.build import build_supernet

if TYPE_CHECKING:
    from raynas.data import DataSplits

FORMAT = "raynas-child/3"
LEGACY_FORMATS = ("raynas-child/1", "raynas-child/2")
FORMATS = (*LEGACY_FORMATS, FORMAT)
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "weights.pt"
METRICS_FILE = "metrics.json"
FILES = (WEIGHTS_FILE, METRICS_FILE, *PROGRAM_FILES)
"""What a ``raynas-child/3`` folder holds besides arch.json."""
_CHILD_KEYS = ("arch", "dims", "resolution")
_KEYS = {FORMAT: ("model", *_CHILD_KEYS),
         **dict.fromkeys(LEGACY_FORMATS, ("space", "space_name", *_CHILD_KEYS, "num_classes", "in_channels",
                                          "bn_layout"))}
"""The keys each format's arch.json must have."""


@dataclass(frozen=True)
class Preprocessing:
    """How images become the child's input; the same as ``raynas.data.to_model_input``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    resolution: int
    in_channels: int
    interpolation: str = "bilinear"
    antialias: bool = True
    input_scale: str = "uint8/255"

    def __post_init__(self) -> None:
        if not len(self.mean) == len(self.std) == self.in_channels:
            raise ConfigError(f"mean and std must have one value per input channel ({self.in_channels}), "
                              f"got mean={list(self.mean)}, std={list(self.std)}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"every std must be > 0, got {list(self.std)}")

    @classmethod
    def of(cls, data: DataInfo, resolution: int) -> Preprocessing:
        """The preprocessing of a child trained on ``data``, fed at ``resolution``."""
        return cls(tuple(map(float, data.mean)), tuple(map(float, data.std)), resolution, data.in_channels)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})


@dataclass(frozen=True)
class LegacyModel:
    """What a ``raynas-child/1`` or ``/2`` arch.json says of its model: no data description,
    so no ``ModelRecord``; enough to rebuild and feed the child, never written again."""

    format: str
    space: SearchSpace
    num_classes: int
    in_channels: int
    bn_layout: str
    preprocessing: Preprocessing | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str) -> LegacyModel:
        space = space_from_dict(dict(values["space"]), source=source, default_name=values["space_name"])
        preprocessing = values.get("preprocessing")
        return cls(values["format"], space, values["num_classes"], values["in_channels"], values["bn_layout"],
                   None if preprocessing is None else Preprocessing.from_dict(preprocessing))

    def build(self, seed: int = 0) -> Supernet:
        return build_supernet(self.space, self.num_classes, self.in_channels, seed=seed, bn_layout=self.bn_layout)


@dataclass(frozen=True)
class ChildRecord:
    """What ``arch.json`` holds: the model's record, and this child's arch, resolution and metrics.

    ``model`` is None only for a folder of an older format, whose ``legacy`` description then
    stands in; exactly one of the two is set.
    """

    model: ModelRecord | None
    arch: str
    dims: Mapping[str, Any]
    resolution: int
    metrics: Mapping[str, Any] = field(default_factory=dict)
    legacy: LegacyModel | None = None

    def __post_init__(self) -> None:
        if (self.model is None) == (self.legacy is None):
            raise ConfigError(f"a child record needs a model record or (older folders) a legacy description, "
                              f"exactly one; got model={self.model!r}, legacy={self.legacy!r}")

    @classmethod
    def of(cls, model: ModelRecord, arch: Arch, metrics: Mapping[str, Any] | None = None) -> ChildRecord:
        """The record of ``arch``, a child of the supernet ``model`` describes."""
        space = model.space
        return cls(model, space.key(arch), arch.to_dict(), space.resolution(arch), dict(metrics or {}))

    @property
    def shape(self) -> ModelRecord | LegacyModel:
        """What rebuilds the child: the model record, or an older folder's description."""
        if self.model is not None:
            return self.model
        assert self.legacy is not None  # __post_init__: exactly one is set
        return self.legacy

    @property
    def format(self) -> str:
        return FORMAT if self.legacy is None else self.legacy.format

    @property
    def preprocessing(self) -> Preprocessing | None:
        """How images become input: from the model's data, or as an older folder recorded it."""
        if self.model is not None:
            return Preprocessing.of(self.model.data, self.resolution)
        return None if self.legacy is None else self.legacy.preprocessing

    def to_dict(self) -> dict[str, Any]:
        """The ``raynas-child/3`` arch.json; an older record cannot be written (it has no data)."""
        if self.model is None:
            raise ConfigError(f"{self.arch}: a {FORMAT} record needs the data the child was trained on (a "
                              f"ModelRecord), got a {self.format} record without one")
        preprocessing = Preprocessing.of(self.model.data, self.resolution)
        return {"format": FORMAT, "model": self.model.to_dict(), "arch": self.arch, "dims": dict(self.dims),
                "resolution": self.resolution, "preprocessing": preprocessing.to_dict(),
                "metrics": dict(self.metrics), "files": list(FILES)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>") -> ChildRecord:
        """Parse arch.json of any format; a missing key or a mismatched preprocessing is a ``ConfigError``."""
        form = values.get("format")
        if form not in FORMATS:
            raise ConfigError(f"{source}: format must be one of {list(FORMATS)}, got {form!r}")
        missing = [k for k in _KEYS[form] if k not in values]
        if missing:
            raise ConfigError(f"{source}: a {form} record needs the keys {list(_KEYS[form])}; missing {missing}")
        child = {"arch": values["arch"], "dims": dict(values["dims"]), "resolution": values["resolution"],
                 "metrics": dict(values.get("metrics") or {})}
        if form != FORMAT:
            return cls(None, **child, legacy=LegacyModel.from_dict(values, source))
        record = cls(ModelRecord.from_dict(values["model"], source), **child)
        _check_preprocessing(record, values.get("preprocessing"), source)
        return record

    def space_and_arch(self) -> tuple[SearchSpace, Arch]:
        space = self.shape.space
        return space, space.arch(dict(self.dims))


def _check_preprocessing(record: ChildRecord, stored: object, source: str) -> None:
    """A /3 arch.json's preprocessing is derived from its model's data: a hand edit must not make them differ."""
    derived = record.preprocessing
    if stored is not None and derived is not None and stored != derived.to_dict():
        raise ConfigError(f"{source}: preprocessing must follow model.data and the resolution, "
                          f"expected {derived.to_dict()}, got {stored}")


def save_child(
    supernet: Supernet, arch: Arch, out_dir: str | os.PathLike[str], data: DataInfo | DataSplits,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``arch`` from ``supernet`` into a child folder (see the module docstring).

    ``data`` (a ``DataInfo``, or the ``DataSplits`` it was trained on) is part of the record:
    the programs normalise with its mean and std, and a later reader knows what the child expects.
    """
    info = data if isinstance(data, DataInfo) else DataInfo.of(data)
    model = ModelRecord.of(supernet.space, info, supernet.bn_layout)
    return write_child(out_dir, supernet.export(arch), ChildRecord.of(model, arch, metrics))


def write_child(out_dir: str | os.PathLike[str], child: nn.Module, record: ChildRecord) -> Path:
    """Write ``child`` (any device or mode; not modified) as a child folder described by ``record``.

    The child must load into ``record``'s architecture, so every folder written loads again. The
    data is recorded by name, not by its folder on this host.
    Each file goes to a temporary name and is moved into place; an existing ``arch.json`` is
    removed first and the new one written last, so no crash leaves a record pointing to
    missing or mismatched files.
    """
    if record.model is not None:  # the folder travels: it names its data, never a path on this host
        record = replace(record, model=replace(record.model, data=record.model.data.named_not_located()))
    metrics_text = _json_text(record.metrics, "metrics")
    record_text = _json_text(record.to_dict(), "record")
    reference = _skeleton(record)
    _load_weights(reference, child.state_dict(), f"the child of {record.arch!r}")
    p = record.preprocessing
    assert p is not None  # to_dict refuses a record without a model; one with a model has a preprocessing
    writers = build_programs(reference, p.mean, p.std, p.resolution, {ARCH_FILE: record_text})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ARCH_FILE).unlink(missing_ok=True)
    _replace(out / WEIGHTS_FILE, lambda f: torch.save(reference.state_dict(), f))
    for name, write in writers.items():
        _replace(out / name, write)
    _replace(out / METRICS_FILE, lambda f: f.write(metrics_text.encode()))
    _replace(out / ARCH_FILE, lambda f: f.write(record_text.encode()))
    return out


def read_child_record(path: str | os.PathLike[str]) -> ChildRecord:
    """The ``arch.json`` of a child folder, of any format."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"child folder {folder} does not exist")
    if not (folder / ARCH_FILE).is_file():
        raise ConfigError(f"{folder} is not a raynas child folder: {ARCH_FILE} is missing")
    try:
        values = json.loads((folder / ARCH_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{folder / ARCH_FILE}: malformed JSON: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{folder / ARCH_FILE} must hold a JSON object, got {type(values).__name__}")
    return ChildRecord.from_dict(values, source=str(folder / ARCH_FILE))


def load_child(path: str | os.PathLike[str]) -> tuple[nn.Module, Arch, SearchSpace]:
    """Rebuild a saved child in eval mode; returns (module, arch, space). Reads every format."""
    folder = Path(path)
    record = read_child_record(folder)
    space, arch = record.space_and_arch()
    if not (folder / WEIGHTS_FILE).is_file():
        raise ConfigError(f"{folder} is not a complete child folder: {WEIGHTS_FILE} is missing")
    child = _skeleton(record)
    _load_weights(child, load_weights(folder / WEIGHTS_FILE, "child's weights file"), str(folder / WEIGHTS_FILE))
    return child, arch, space


def with_preprocessing(child: nn.Module, preprocessing: Preprocessing) -> nn.Module:
    """``child`` behind its preprocessing: float images in [0, 1] of any size -> logits."""
    return PreprocessedChild(child, preprocessing.mean, preprocessing.std, preprocessing.resolution).eval()


def _skeleton(record: ChildRecord) -> nn.Module:
    """A child of the record's shape (eval, CPU), with untrained weights."""
    _, arch = record.space_and_arch()
    return record.shape.build().export(arch).eval()


def _load_weights(child: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    try:
        child.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ConfigError(f"{what}: the weights must match the recorded architecture, classes and channels; "
                          f"{' '.join(lines)[:500]}") from None


def _json_text(values: Mapping[str, Any], what: str) -> str:
    try:
        return json.dumps(values, indent=2) + "\n"
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be JSON-serialisable (str keys; numbers, strings, lists, dicts): "
                          f"{err}") from None


def _replace(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write through a temporary file in the same folder, then move it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
