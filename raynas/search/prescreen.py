"""Prescreen: the table-lookup objectives of a large seeded sample, in bulk, and its Pareto front.

BN score, FLOPs, params and latency are table lookups: in the ask/tell loop they cost about 3 ms a
trial (Optuna, Parquet, the pool round trip), as numpy over an index matrix a few microseconds.
So ``raynas search --prescreen N`` samples N children as one index matrix (seeded by the search
seed), drops repeated architectures, computes the costs here, applies the constraints, BN-scores
the feasible rest on the evaluator actors, and keeps the exact non-dominated set under the
search's objective directions (plus the next fronts, up to ``keep`` children). The search then
evaluates the kept children as its first trials, and its sampler goes on from there.

Fronts are exact. Rows are sorted lexicographically (every objective minimised, the objective
with the fewest ties first) and identical rows merged, so a row can only be dominated by an
earlier one:

- 1 objective: the first row. 2: a running minimum of the second objective.
- 3: blocks of rows, each checked against the staircase of the earlier fronts' (f2, f3) by binary
  search, then against each other; O(n log n) while fronts stay small.
- 4 or more: blocks checked against the front so far; O(n * front size).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raynas.errors import ConfigError
from raynas.results.fronts import pareto_layers
from raynas.search.costs import CheapObjectives
from raynas.search.objectives import OBJECTIVES, Constraint
from raynas.space import SearchSpace

LOOKUPS = ("bn_score", "flops", "params", "latency_ms")
"""Objectives that are table lookups, so a prescreen can compute them for millions of children."""
STEPS = ("sample", "dedup", "cost", "score", "front")
"""The timed steps of a prescreen (``Prescreened.stats`` holds ``<step>_s``)."""
HASH_SEED = 0x5EED
META_KEY = b"raynas.prescreen"
"""Parquet schema metadata of a prescreen file: the settings it was made with and its counts."""

Scorer = Callable[[np.ndarray], np.ndarray]
"""BN scores of an index matrix (``EvaluatorPool.score_matrix``, or ``BNIndicator.score``)."""


# --- settings --------------------------------------------------------------------------------
def lookup_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """The objectives a prescreen computes; a search with none of them cannot prescreen."""
    names = tuple(o for o in objectives if o in LOOKUPS)
    if not names:
        raise ConfigError(f"--prescreen needs a table-lookup objective ({', '.join(LOOKUPS)}), "
                          f"got objectives {list(objectives)}")
    return names


def check_prescreen(samples: int, keep: int, objectives: Sequence[str]) -> None:
    """Refuse prescreen settings that cannot work, before anything starts."""
    if samples < 0 or keep < 0:
        raise ConfigError(f"prescreen and prescreen_keep must be >= 0, got prescreen={samples}, prescreen_keep={keep}")
    if keep and not samples:
        raise ConfigError(f"prescreen_keep={keep} needs a prescreen: pass --prescreen N")
    if samples:
        lookup_objectives(objectives)


# --- each architecture once -----------------------------------------------------------------
def first_occurrences(matrix: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row, ascending.

    ``sample_index_matrix`` writes -1 in every inactive dimension (a depth-pruned block's kernel
    and expand), so two of its rows are one architecture exactly when they are equal, as their
    keys are: no key is formatted for a million rows. Each row's bytes, zero-padded to whole
    64-bit words, get a random linear hash; rows that share a hash with an earlier row are then
    compared in full, and only a hash collision between two different rows (never seen) falls
    back to sorting the rows' bytes.
    """
    n = len(matrix)
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    rows = np.ascontiguousarray(matrix).view(np.uint8).reshape(n, -1)
    words = np.zeros((n, -(-rows.shape[1] // 8) * 8), dtype=np.uint8)
    words[:, :rows.shape[1]] = rows
    words = words.view(np.uint64)
    weights = np.random.default_rng(HASH_SEED).integers(1, 2**63, size=words.shape[1], dtype=np.uint64)
    hashes = np.zeros(n, dtype=np.uint64)
    for col, weight in enumerate(weights):
        hashes += words[:, col] * weight  # wraps modulo 2**64
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    repeats = np.flatnonzero(first[inverse] != np.arange(n))
    if not np.array_equal(matrix[repeats], matrix[first[inverse[repeats]]]):
        _, first = np.unique(words, axis=0, return_index=True)
    return np.sort(first)


# --- cheap columns and constraints -----------------------------------------------------------
def cost_columns(cheap: CheapObjectives, matrix: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The cost columns among ``names`` (flops, params, latency_ms), vectorised over an index matrix."""
    columns: dict[str, np.ndarray] = {}
    if {"flops", "params"} & set(names):
        columns.update(cheap.cost.costs(matrix))
    if "latency_ms" in names:
        columns["latency_ms"] = np.asarray(cheap.latency_table.predict(cheap.space, matrix), dtype=float)
    return columns


def feasible(columns: Mapping[str, np.ndarray], constraints: Sequence[Constraint], n: int) -> np.ndarray:
    """True for each row that meets every constraint (the search's own ``violation`` rule)."""
    ok = np.ones(n, dtype=bool)
    for c in constraints:
        ok &= c.violation(np.asarray(columns[c.name], dtype=float)) <= 0
    return ok


def as_losses(columns: Mapping[str, np.ndarray], objectives: Sequence[str]) -> np.ndarray:
    """(rows, objectives) float64, every objective minimised: maximised ones are negated."""
    signs = [OBJECTIVES[o].sign for o in objectives]
    return np.column_stack([np.asarray(columns[o], dtype=float) * s for o, s in zip(objectives, signs)])


@dataclass
class Prescreened:
    """The children a prescreen kept, best fronts first, and what it looked at and cost.

    ``table`` has the columns ``arch`` (key), ``rank`` (front number), one per computed objective
    or constraint, and one per dimension; ``stats`` the counts, the seconds of each step, and the
    CPU seconds of this process (BN scores are computed elsewhere, on the evaluator actors).
    """

    table: pd.DataFrame
    stats: dict[str, Any]

    @property
    def keys(self) -> list[str]:
        return self.table["arch"].tolist()

    def summary(self) -> str:
        s = self.stats
        steps = ", ".join(f"{name} {s[f'{name}_s']:.2f}" for name in STEPS)
        return (f"prescreen: {s['sampled']:,} sampled, {s['distinct']:,} distinct, {s['feasible']:,} feasible; "
                f"kept {s['kept']:,} (front {s['front']:,}) in {s['seconds']:.2f} s ({steps})")


def prescreen(space: SearchSpace, cheap: CheapObjectives, score: Scorer | None, samples: int, *,
              objectives: Sequence[str], constraints: Sequence[Constraint] = (), seed: int = 0,
              keep: int = 0) -> Prescreened:
    """Sample ``samples`` children, keep the front of the feasible distinct ones (see the module)."""
    lookups = lookup_objectives(objectives)
    if "bn_score" in lookups and score is None:
        raise ConfigError("a prescreen on bn_score needs a scorer (the evaluator pool's score_matrix)")
    clock, cpu_started = _Clock(), time.process_time()
    with clock("sample"):
        matrix = space.sample_index_matrix(samples, seed=seed)
    with clock("dedup"):
        matrix = matrix[first_occurrences(matrix)]
    distinct = len(matrix)
    with clock("cost"):
        columns = cost_columns(cheap, matrix, [*lookups, *(c.name for c in constraints)])
        ok = feasible(columns, constraints, len(matrix))
        matrix, columns = matrix[ok], {name: values[ok] for name, values in columns.items()}
    if score is not None and "bn_score" in lookups:
        with clock("score"):
            columns["bn_score"] = np.asarray(score(matrix), dtype=float)
    with clock("front"):
        losses = as_losses(columns, lookups)
        ranks = pareto_layers(losses, keep)
        chosen = np.flatnonzero(ranks >= 0)
        chosen = chosen[np.lexsort((*losses[chosen].T[::-1], ranks[chosen]))]  # by front, then objectives
    table = kept_table(space, matrix[chosen], {name: v[chosen] for name, v in columns.items()}, ranks[chosen])
    stats = {"sampled": samples, "distinct": distinct, "feasible": len(matrix), "kept": len(chosen),
             "front": int(np.count_nonzero(ranks == 0)), **clock.seconds, "seconds": sum(clock.seconds.values()),
             "driver_cpu_s": time.process_time() - cpu_started}
    return Prescreened(table, stats)


def kept_table(space: SearchSpace, matrix: np.ndarray, columns: Mapping[str, np.ndarray],
               ranks: np.ndarray) -> pd.DataFrame:
    """One row per kept child: its key, front, computed columns and one column per dimension."""
    archs = space.from_index_matrix(matrix)
    dims = pd.DataFrame([space.encode(a) for a in archs], columns=list(space.names))
    head = pd.DataFrame({"arch": [space.key(a) for a in archs], "rank": ranks.astype(np.int64),
                         **{name: np.asarray(v) for name, v in columns.items()}})
    return pd.concat([head, dims], axis=1)


class _Clock:
    """Seconds per named step (``with clock("sample"): ...``), 0 for steps that did not run."""

    def __init__(self) -> None:
        self.seconds = {f"{name}_s": 0.0 for name in STEPS}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[f"{name}_s"] = time.perf_counter() - started


# --- the prescreen file ----------------------------------------------------------------------
def prescreen_path(out_dir: str | os.PathLike[str], run_id: str) -> Path:
    return Path(out_dir) / f"prescreen-{run_id}.parquet"


def write_prescreened(path: Path, result: Prescreened, settings: Mapping[str, Any]) -> Path:
    """Write the kept set atomically (temp file, then rename), with its settings and stats."""
    table = pa.Table.from_pandas(result.table, preserve_index=False)
    meta = json.dumps({"settings": dict(settings), "stats": result.stats})
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: meta.encode()})
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.parquet")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_prescreened(path: Path, settings: Mapping[str, Any]) -> Prescreened | None:
    """The kept set a prescreen with these ``settings`` wrote to ``path``, or None if there is none."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[META_KEY])
    except (pa.ArrowException, OSError, KeyError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable prescreen file ({err}); delete it to prescreen again") from None
    if meta["settings"] != json.loads(json.dumps(dict(settings))):
        return None
    return Prescreened(table.to_pandas(), meta["stats"])
