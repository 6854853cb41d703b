"""Score a list of architectures with estimator expressions: resumable, on the evaluator actors.

Table estimators (cost terms, the BN indicator) run here over one index matrix. Network
estimators run on a pool of evaluator actors in chunks; each chunk's rows are written as a
closed Parquet part before the next starts, so a killed run loses at most one chunk, and a
rerun scores only what is missing. Fusions and learned rankers are derived last, from the
member columns of every requested architecture (their reference population).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raynas.errors import ConfigError
from raynas.estimate.training_free import BUILD, ProbeBatch, ScoringContext, estimator, score_children
from raynas.estimate.training_free.fusion import Expression, fusion_of
from raynas.logs import get_logger
from raynas.search.pool import EvaluatorPool, PoolConfig, SupernetSource
from raynas.space import Arch

logger = get_logger(__name__)
CHUNK_PER_ACTOR = 8
"""Architectures per actor in one resumable chunk."""


def ranker_of(expression: Expression, source: SupernetSource) -> Any:
    from raynas.estimate.training_free.ranker import LearnedRanker

    assert expression.path is not None
    return LearnedRanker.load(expression.path, source.space)


def base_names(expressions: Sequence[Expression], rankers: dict[str, Any]) -> list[str]:
    """Every registered estimator the expressions need, each once, in first-use order."""
    names: list[str] = []
    for expression in expressions:
        members = rankers[expression.text].features if expression.kind == "ranker" else expression.members
        names += [m for m in members if m not in names]
    return names


@dataclass(frozen=True)
class PartStore:
    """A folder of closed Parquet parts, one per scored chunk, for one scoring identity."""

    folder: Path
    identity: dict[str, Any]

    def open(self) -> pd.DataFrame:
        """The rows scored so far; a folder of another identity is refused, never mixed."""
        manifest = self.folder / "_manifest.json"  # "_": pyarrow reads the folder as a dataset
        if manifest.is_file():
            found = json.loads(manifest.read_text())
            if found != self.identity:
                changed = sorted(k for k in {**found, **self.identity} if found.get(k) != self.identity.get(k))
                raise ConfigError(f"{self.folder} holds scores made with other settings ({', '.join(changed)}); "
                                  "pass another --out, or the same settings to resume")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(manifest, lambda tmp: tmp.write_text(json.dumps(self.identity, indent=1)))
        parts = sorted(self.folder.glob("part-*.parquet"))
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()

    def write(self, rows: list[dict[str, Any]]) -> None:
        part = self.folder / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        _write_atomic(part, lambda tmp: pq.write_table(pa.Table.from_pylist(rows), tmp))


def _write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def identity_of(source_id: str, probe: ProbeBatch | None, seed: int, indicator: dict[str, Any]) -> dict[str, Any]:
    """What makes two scorings comparable: the supernet, the probe images, the seed, the BN settings."""
    images = hashlib.sha1(probe.images.tobytes() + probe.labels.tobytes()).hexdigest()[:16] if probe else None
    return {"source": source_id, "probe": images, "seed": seed, "indicator": indicator}


def score_network_estimators(source: SupernetSource, archs: Sequence[Arch], names: Sequence[str],
                             probe: ProbeBatch, pool_config: PoolConfig, store: PartStore) -> pd.DataFrame:
    """Per-architecture rows of the network estimators ``names``; only missing ones are computed."""
    done = store.open()
    keys = [source.space.key(a) for a in archs]
    complete = done if len(done) and set(names) <= set(done.columns) else pd.DataFrame({"arch": [], **{n: [] for n in names}})
    have = set(complete["arch"][complete[list(names)].notna().all(axis=1)])
    todo = [a for a, k in zip(archs, keys) if k not in have]
    todo = list({source.space.key(a): a for a in todo}.values())
    if todo:
        started, chunk = time.perf_counter(), pool_config.num_actors * CHUNK_PER_ACTOR
        with EvaluatorPool(source, None, pool_config, probe=probe) as pool:
            for start in range(0, len(todo), chunk):
                store.write(pool.estimate(todo[start:start + chunk], names, batch_size=1))
                finished = min(start + chunk, len(todo))
                rate = finished / (time.perf_counter() - started)
                logger.info(f"scored {finished:,}/{len(todo):,} architectures ({rate:.2f}/s, "
                            f"ETA {(len(todo) - finished) / rate:.0f}s)")
        done = store.open()
    done = done.drop_duplicates("arch", keep="last").set_index("arch")
    return done.loc[keys, [c for c in done.columns if c in names or c.endswith("_cpu_s")]]


def table_scores(source: SupernetSource, archs: Sequence[Arch], names: Sequence[str],
                 indicator: dict[str, Any]) -> dict[str, np.ndarray]:
    """The table estimators' columns and their CPU-seconds per architecture, computed here."""
    scores = score_children(ScoringContext(source.supernet, None, indicator), archs, names)
    return {**scores.values, **{f"{n}_cpu_s": v for n, v in scores.cpu_seconds.items()}}


def derive(expressions: Sequence[Expression], columns: dict[str, np.ndarray], rankers: dict[str, Any],
           source: SupernetSource, archs: Sequence[Arch]) -> dict[str, np.ndarray]:
    """The fused, voted and learned columns, from the member columns of all ``archs``."""
    derived = {}
    for expression in expressions:
        if expression.kind == "ranker":
            matrix = source.space.index_matrix(list(archs))
            derived[expression.text] = rankers[expression.text].predict(source.space, matrix, columns)
        elif not expression.base:
            derived[expression.text] = fusion_of(expression).fit(columns).score(columns)
    return derived


def score_architectures(source: SupernetSource, archs: Sequence[Arch], expressions: Sequence[Expression], *,
                        probe: ProbeBatch | None, pool_config: PoolConfig, store: PartStore,
                        indicator: dict[str, Any]) -> pd.DataFrame:
    """One row per architecture (in order): ``arch``, every expression's column, ``<name>_cpu_s``."""
    rankers = {e.text: ranker_of(e, source) for e in expressions if e.kind == "ranker"}
    names = base_names(expressions, rankers)
    network = [n for n in names if estimator(n).kind == "network"]
    columns = table_scores(source, archs, [n for n in names if n not in network], indicator)
    if network:
        if probe is None:
            raise ConfigError(f"estimators {network} run children on images: pass --data")
        frame = score_network_estimators(source, archs, network, probe, pool_config, store)
        columns.update({c: frame[c].to_numpy(dtype=np.float64) for c in frame.columns})
    columns.update(derive(expressions, columns, rankers, source, archs))
    ordered = [e.text for e in expressions] + [n for n in names if n not in {e.text for e in expressions}]
    seconds = [f"{n}_cpu_s" for n in [*names, BUILD] if f"{n}_cpu_s" in columns]
    return pd.DataFrame({"arch": [source.space.key(a) for a in archs],
                         **{c: columns[c] for c in ordered + seconds}})
