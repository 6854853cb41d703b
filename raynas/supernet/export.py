"""Save an exported child as a folder a user can ship, and load it back.

A child folder (format ``raynas-child/2``)::

    arch.json     the ChildRecord: space definition, arch key and dims, classes, channels, BN
                  layout, preprocessing and metrics; written last, so a folder with arch.json
                  is complete
    weights.pt    the child's state dict (rebuild it with ``load_child``)
    metrics.json  the metrics the exporter passed (accuracy and its split, seconds, ...)
    model.ts      TorchScript: float images in [0, 1], (N, C, H, W) of any size -> logits;
                  needs only torch (``torch.jit.load``)
    model.pt2     the same program as ``torch.export`` (``torch.export.load(path).module()``)

The two programs exist when the preprocessing (mean and std) is known. ``raynas-child/1``
folders (arch.json and weights.pt only) still load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import torch
from torch import nn

from raynas.errors import ConfigError
from raynas.space import Arch, SearchSpace, space_from_dict
from raynas.supernet._programs import PROGRAM_FILES, PreprocessedChild, build_programs
from raynas.supernet.base import Supernet
from raynas.supernet.build import build_supernet

FORMAT = "raynas-child/2"
FORMATS = ("raynas-child/1", FORMAT)
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "weights.pt"
METRICS_FILE = "metrics.json"


class Normalisation(Protocol):
    """What an exporter needs from a dataset description (``DataInfo`` or ``DataSplits``)."""

    mean: Sequence[float]
    std: Sequence[float]


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

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})


@dataclass(frozen=True)
class ChildRecord:
    """What ``arch.json`` holds: enough to rebuild, feed and judge one exported child."""

    space: Mapping[str, Any]  # the space definition, so a child loads without its space file
    space_name: str
    arch: str
    dims: Mapping[str, Any]
    resolution: int
    num_classes: int
    in_channels: int
    bn_layout: str
    preprocessing: Preprocessing | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    @classmethod
    def of(
        cls, space: SearchSpace, arch: Arch, *, num_classes: int, in_channels: int, bn_layout: str,
        data: Normalisation | None = None, metrics: Mapping[str, Any] | None = None,
    ) -> ChildRecord:
        resolution = space.resolution(arch)
        preprocessing = None if data is None else Preprocessing(
            tuple(map(float, data.mean)), tuple(map(float, data.std)), resolution, in_channels)
        return cls(space.definition or {"name": space.name, "family": space.family}, space.name, space.key(arch),
                   arch.to_dict(), resolution, num_classes, in_channels, bn_layout, preprocessing, dict(metrics or {}))

    @property
    def files(self) -> tuple[str, ...]:
        programs = PROGRAM_FILES if self.preprocessing is not None else ()
        return (WEIGHTS_FILE, METRICS_FILE, *programs) if self.format == FORMAT else (WEIGHTS_FILE,)

    def to_dict(self) -> dict[str, Any]:
        values = {**self.__dict__, "space": dict(self.space), "dims": dict(self.dims), "metrics": dict(self.metrics)}
        values["preprocessing"] = None if self.preprocessing is None else self.preprocessing.to_dict()
        return {"format": self.format, **{k: v for k, v in values.items() if k != "format"}, "files": list(self.files)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>") -> ChildRecord:
        if values.get("format") not in FORMATS:
            raise ConfigError(f"{source}: format must be one of {list(FORMATS)}, got {values.get('format')!r}")
        required = [f for f in cls.__dataclass_fields__ if f not in ("preprocessing", "metrics")]
        missing = [k for k in required if k not in values]
        if missing:
            raise ConfigError(f"{source}: a {values['format']} record needs the keys {required}; missing {missing}")
        known = {k: values[k] for k in required}
        preprocessing = values.get("preprocessing")
        return cls(**known, preprocessing=None if preprocessing is None else Preprocessing.from_dict(preprocessing),
                   metrics=dict(values.get("metrics") or {}))

    def space_and_arch(self, source: str = "<record>") -> tuple[SearchSpace, Arch]:
        space = space_from_dict(dict(self.space), source=source, default_name=self.space_name)
        return space, space.arch(dict(self.dims))


def save_child(
    supernet: Supernet, arch: Arch, out_dir: str | os.PathLike[str],
    data: Normalisation | None = None, metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``arch`` from ``supernet`` into a child folder (see the module docstring).

    Without ``data`` (mean and std) the folder has no ``model.ts`` / ``model.pt2``: a program
    that normalises needs the normalisation.
    """
    record = ChildRecord.of(supernet.space, arch, num_classes=supernet.num_classes, in_channels=supernet.in_channels,
                            bn_layout=supernet.bn_layout, data=data, metrics=metrics)
    return write_child(out_dir, supernet.export(arch), record)


def write_child(out_dir: str | os.PathLike[str], child: nn.Module, record: ChildRecord) -> Path:
    """Write ``child`` (any device or mode; not modified) as a child folder described by ``record``.

    The child must load into ``record``'s architecture, so every folder written loads again.
    Each file goes to a temporary name and is moved into place; an existing ``arch.json`` is
    removed first and the new one written last, so no crash leaves a record pointing to
    missing or mismatched files.
    """
    record = replace(record, format=FORMAT)
    metrics_text = _json_text(record.metrics, "metrics")
    reference = _skeleton(record, *record.space_and_arch())
    _load_weights(reference, child.state_dict(), f"the child of {record.arch!r}")
    record_text = _json_text(record.to_dict(), "record")
    writers: dict[str, Callable[[BinaryIO], None]] = {}
    if record.preprocessing is not None:
        p = record.preprocessing
        writers = build_programs(reference, p.mean, p.std, p.resolution, {ARCH_FILE: record_text})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ARCH_FILE).unlink(missing_ok=True)
    for stale in set(PROGRAM_FILES) - set(writers):
        (out / stale).unlink(missing_ok=True)
    _replace(out / WEIGHTS_FILE, lambda f: torch.save(reference.state_dict(), f))
    for name, write in writers.items():
        _replace(out / name, write)
    _replace(out / METRICS_FILE, lambda f: f.write(metrics_text.encode()))
    _replace(out / ARCH_FILE, lambda f: f.write(record_text.encode()))
    return out


def read_child_record(path: str | os.PathLike[str]) -> ChildRecord:
    """The ``arch.json`` of a child folder, of either format."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"child folder {folder} does not exist")
    if not (folder / ARCH_FILE).is_file():
        raise ConfigError(f"{folder} is not a raynas child folder: {ARCH_FILE} is missing")
    try:
        values = json.loads((folder / ARCH_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{folder / ARCH_FILE}: malformed JSON: {err}") from err
    return ChildRecord.from_dict(values, source=str(folder / ARCH_FILE))


def load_child(path: str | os.PathLike[str]) -> tuple[nn.Module, Arch, SearchSpace]:
    """Rebuild a saved child in eval mode; returns (module, arch, space). Reads both formats."""
    folder = Path(path)
    record = read_child_record(folder)
    source = str(folder / ARCH_FILE)
    space, arch = record.space_and_arch(source)
    if not (folder / WEIGHTS_FILE).is_file():
        raise ConfigError(f"{folder} is not a complete child folder: {WEIGHTS_FILE} is missing")
    child = _skeleton(record, space, arch)
    _load_weights(child, torch.load(folder / WEIGHTS_FILE, weights_only=True), str(folder / WEIGHTS_FILE))
    return child, arch, space


def with_preprocessing(child: nn.Module, preprocessing: Preprocessing) -> nn.Module:
    """``child`` behind its preprocessing: float images in [0, 1] of any size -> logits."""
    return PreprocessedChild(child, preprocessing.mean, preprocessing.std, preprocessing.resolution).eval()


def _skeleton(record: ChildRecord, space: SearchSpace, arch: Arch) -> nn.Module:
    """A child of the record's shape (eval, CPU), with untrained weights."""
    return build_supernet(space, record.num_classes, record.in_channels, bn_layout=record.bn_layout).export(arch).eval()


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
