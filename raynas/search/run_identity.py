"""What produced a search's results, recorded in ``run.json``, so a resume never mixes two searches.

A search can be resumed (``--trials`` raised, a killed driver restarted) only under the identity
it started with: the same checkpoint, space, evaluator, sampler, seeds, objectives, constraints,
depth rule, prescreen (``--prescreen N``, ``--prescreen-keep K``) and estimator expression (with
its reference population and probe minibatch). Anything else would put two
searches' trials in one study and their rows on one front. The number of trials, the batch size
and ``top_k`` are not part of it: they say how far to go, not what is searched.

``run.json`` keeps one identity per run id under ``"runs"``; a folder written before identities
existed is read from its top-level ``run_id``/``checkpoint_id``/``search`` fields, and a folder that
lost ``run.json`` from what its Parquet rows record (checkpoint, sampler, seed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from raynas.errors import ConfigError
from raynas.results import ResultStore
from raynas.results.report import RUNS_KEY
from raynas.search.objectives import Constraint

ROW_FIELDS = ("checkpoint_id", "sampler", "seed")
"""What a Parquet row records of its run's identity."""


@dataclass(frozen=True)
class RunIdentity:
    """Everything that decides a search's rows. ``None`` marks a field the run does not use
    (``population`` outside NSGA-II/III, ``depth_rule`` outside BN scoring, the calibration
    outside the calibrate evaluator: a top-K stage's rows record their own ``calib_images``; the
    estimator, its reference and probe outside the estimate evaluator);
    such a field is never compared. Fields added later (``LATER``) are left out of ``to_dict`` and
    ``config_hash`` while unset, so an identity recorded before they existed keeps its hash."""

    LATER: ClassVar[tuple[str, ...]] = ("prescreen", "prescreen_keep", "estimator", "estimator_reference", "probe",
                                        "pool")

    checkpoint_id: str
    space: str
    space_hash: str
    evaluator: str
    sampler: str
    seed: int
    objectives: tuple[str, ...]
    constraints: tuple[str, ...]
    population: int | None = None
    depth_rule: str | None = None
    calib_images: int | None = None
    calib_seed: int | None = None
    prescreen: int | None = None
    prescreen_keep: int | None = None
    estimator: str | None = None
    """The ``estimate`` objective's expression."""
    estimator_reference: int | None = None
    """Children in a fusion's reference population."""
    probe: str | None = None
    """A digest of the probe minibatch network estimators score on."""
    pool: str | None = None
    """``<archs>:<sha1>`` of the architectures a pool search may evaluate (``raynas.search.arch_pool``)."""

    @property
    def config_hash(self) -> str:
        """A short digest of every field: one value to compare and to quote."""
        fields = json.dumps(self._fields(), sort_keys=True)
        return hashlib.sha256(fields.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**self._fields(), "config_hash": self.config_hash}

    def differences(self, recorded: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{field: (recorded, this)}`` for each field both set and that differs."""
        return {name: (recorded[name], value) for name, value in self._fields().items()
                if value is not None and recorded.get(name) is not None and recorded[name] != value}

    def _fields(self) -> dict[str, Any]:
        """The fields as JSON values (tuples as lists), as ``run.json`` holds them."""
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()
                if value is not None or name not in self.LATER}


def space_hash(definition: Mapping[str, Any]) -> str:
    """A digest of a space definition: two spaces may share a name, not a definition."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recorded_identity(meta: Mapping[str, Any], run_id: str, store: ResultStore) -> dict[str, Any]:
    """The identity ``run.json`` (``meta``) records for ``run_id``, else what the ``store``'s rows do; {} if none."""
    runs = meta.get(RUNS_KEY) or {}
    if run_id in runs:
        return dict(runs[run_id])
    search = meta.get("search")
    if meta.get("run_id") == run_id and isinstance(search, Mapping):  # run.json from before identities
        return {"checkpoint_id": meta.get("checkpoint_id"), "space": meta.get("space_name"),
                **{k: search.get(k) for k in ("sampler", "seed", "objectives", "population", "depth_rule")},
                "constraints": [str(Constraint.parse(c)) for c in search.get("constraints", ())]}
    rows = store.to_pandas(columns=["run_id", *ROW_FIELDS])
    ours = rows[rows["run_id"] == run_id]
    if not len(ours):
        return {}
    first = ours.iloc[0]
    return {name: _plain(first[name]) for name in ROW_FIELDS}


def _plain(value: Any) -> Any:
    """A Parquet cell as a JSON value: NumPy scalars unwrapped, missing values None."""
    if pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def check_resume(out_dir: str | Path, run_id: str, recorded: Mapping[str, Any], identity: RunIdentity) -> None:
    """Refuse to continue search ``run_id`` of ``out_dir`` under another identity, naming each field."""
    changed = identity.differences(recorded)
    if not changed:
        return
    before = ", ".join(f"{name}={old!r}" for name, (old, _) in changed.items())
    after = ", ".join(f"{name}={new!r}" for name, (_, new) in changed.items())
    raise ConfigError(f"{out_dir} holds search {run_id!r} scored with {before}; resuming it with {after} would mix "
                      f"two searches' results: pass another --out, or --new-run (raynas search) to write this search "
                      f"to a fresh sub-folder {Path(out_dir) / 'run-N'}")
