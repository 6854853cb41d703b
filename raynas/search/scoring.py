"""Score a list of architectures with estimator expressions: resumable, on the evaluator actors.

Table estimators (cost terms, the BN indicator) run here over one index matrix. Network
estimators run on a pool of evaluator actors in chunks; each chunk's rows are written as a
closed Parquet part before the next starts, so a killed run loses at most one chunk, and a
rerun scores only what is missing. Fusions and learned rankers are derived last, from the
member columns of every requested architecture (their reference population).

A search's ``estimate`` objective (``EstimateObjective``) scores a few children at a time
instead: each batch's base estimators on the actors, then the expression's value, a fusion's
placing each child in a fixed reference population scored once, at the search's start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raynas.atomic import write_atomic
from raynas.errors import ConfigError
from raynas.estimate import IndicatorSettings
from raynas.estimate.training_free import BUILD, ProbeBatch, ScoringContext, estimator, score_children
from raynas.estimate.training_free.fusion import Columns, Expression, fusion_of, parse_expression
from raynas.logs import get_logger
from raynas.search.pool import EvaluatorPool, PoolConfig, SupernetSource
from raynas.search.runner import Row
from raynas.space import Arch, SearchSpace

if TYPE_CHECKING:
    from raynas.estimate.training_free.ranker import LearnedRanker

logger = get_logger(__name__)
CHUNK_PER_ACTOR = 8
"""Architectures per actor in one resumable chunk."""
FUSIONS = ("fuse", "vote")
"""Expression kinds that rank a child within a reference population."""
PoolOpener = Callable[[], AbstractContextManager[EvaluatorPool]]
"""Opens the pool that scores what is missing: a new one, or ``contextlib.nullcontext`` of a running one."""


def ranker_of(expression: Expression, space: SearchSpace) -> LearnedRanker:
    from raynas.estimate.training_free.ranker import LearnedRanker

    assert expression.path is not None
    return LearnedRanker.load(expression.path, space)


def base_names(expressions: Sequence[Expression], rankers: Mapping[str, LearnedRanker]) -> list[str]:
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
    identity: dict[str, object]

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
            write_atomic(manifest, lambda tmp: tmp.write_text(json.dumps(self.identity, indent=1)))
        parts = sorted(self.folder.glob("part-*.parquet"))
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()

    def write(self, rows: Sequence[Mapping[str, object]]) -> None:
        part = self.folder / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        write_atomic(part, lambda tmp: pq.write_table(pa.Table.from_pylist(rows), tmp))


def probe_digest(probe: ProbeBatch | None) -> str | None:
    """A short digest of the probe's images and labels (None without a probe)."""
    return hashlib.sha1(probe.images.tobytes() + probe.labels.tobytes()).hexdigest()[:16] if probe else None


def identity_of(source_id: str, probe: ProbeBatch | None, seed: int, indicator: IndicatorSettings
                ) -> dict[str, object]:
    """What makes two scorings comparable: the supernet, the probe images, the seed, the BN settings."""
    return {"source": source_id, "probe": probe_digest(probe), "seed": seed, "indicator": indicator}


def estimate_resumably(open_pool: PoolOpener, space: SearchSpace, archs: Sequence[Arch], names: Sequence[str],
                       store: PartStore) -> pd.DataFrame:
    """Per-architecture rows of the estimators ``names`` (in ``archs``' order), with their CPU-seconds;
    only the ones ``store`` lacks are computed, in chunks, on the pool ``open_pool`` opens."""
    done = store.open()
    keys = [space.key(a) for a in archs]
    complete = done if len(done) and set(names) <= set(done.columns) else pd.DataFrame({"arch": [], **{n: [] for n in names}})
    have = set(complete["arch"][complete[list(names)].notna().all(axis=1)])
    todo = [a for a, k in zip(archs, keys) if k not in have]
    todo = list({space.key(a): a for a in todo}.values())
    if todo:
        started = time.perf_counter()
        with open_pool() as pool:
            chunk = len(pool.actors) * CHUNK_PER_ACTOR
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
                 indicator: IndicatorSettings) -> dict[str, np.ndarray]:
    """The table estimators' columns and their CPU-seconds per architecture, computed here."""
    scores = score_children(ScoringContext(source.supernet, None, indicator), archs, names)
    return {**scores.values, **{f"{n}_cpu_s": v for n, v in scores.cpu_seconds.items()}}


def derive(expressions: Sequence[Expression], columns: Columns, rankers: Mapping[str, LearnedRanker],
           space: SearchSpace, archs: Sequence[Arch], reference: Columns | None = None) -> dict[str, np.ndarray]:
    """The fused, voted and learned columns of ``archs``, from their member ``columns``. A fusion
    ranks each child within ``reference``'s member columns (default: those of ``archs`` themselves)."""
    derived = {}
    for expression in expressions:
        if expression.kind == "ranker":
            matrix = space.index_matrix(list(archs))
            derived[expression.text] = rankers[expression.text].predict(space, matrix, columns)
        elif not expression.base:
            derived[expression.text] = fusion_of(expression).fit(columns if reference is None else reference
                                                                 ).score(columns)
    return derived


def score_architectures(source: SupernetSource, archs: Sequence[Arch], expressions: Sequence[Expression], *,
                        probe: ProbeBatch | None, pool_config: PoolConfig, store: PartStore,
                        indicator: IndicatorSettings, open_pool: PoolOpener | None = None) -> pd.DataFrame:
    """One row per architecture (in order): ``arch``, every expression's column, ``<name>_cpu_s``.

    Network estimators run on the pool ``open_pool`` opens (default: one started for them)."""
    rankers = {e.text: ranker_of(e, source.space) for e in expressions if e.kind == "ranker"}
    names = base_names(expressions, rankers)
    network = [n for n in names if estimator(n).kind == "network"]
    columns = table_scores(source, archs, [n for n in names if n not in network], indicator)
    if network:
        if probe is None:
            raise ConfigError(f"estimators {network} run children on images: pass --data")
        opener = open_pool or (lambda: EvaluatorPool(source, None, pool_config, probe=probe))
        frame = estimate_resumably(opener, source.space, archs, network, store)
        columns.update({c: frame[c].to_numpy(dtype=np.float64) for c in frame.columns})
    columns.update(derive(expressions, columns, rankers, source.space, archs))
    ordered = [e.text for e in expressions] + [n for n in names if n not in {e.text for e in expressions}]
    seconds = [f"{n}_cpu_s" for n in [*names, BUILD] if f"{n}_cpu_s" in columns]
    return pd.DataFrame({"arch": [source.space.key(a) for a in archs],
                         **{c: columns[c] for c in ordered + seconds}})


# --- a search's estimate objective ---------------------------------------------------------------
@dataclass(frozen=True)
class EstimateObjective:
    """A search's ``estimate`` objective: one expression's value per child, from its base estimators'.

    A plain estimator is its own value and a learned ranker its prediction; a fusion places each
    child in a fixed reference population (``reference``: its members' columns), so a child scores
    the same whichever batch it comes in, and whichever engine asks.
    """

    expression: Expression
    names: tuple[str, ...]
    """The registered estimators the actors compute per child (``EvaluatorPool.estimate``)."""
    space: SearchSpace
    rankers: dict[str, LearnedRanker] = field(default_factory=dict)
    reference: dict[str, np.ndarray] | None = None

    def rows(self, estimated: Sequence[Row]) -> list[Row]:
        """Each child's result from its ``EvaluatorPool.estimate`` row: ``estimate``, with the CPU-seconds
        its estimators spent as ``eval_seconds``; a child the expression gives NaN is a failed row."""
        archs = [self.space.arch(r["arch"]) for r in estimated]
        columns = {n: np.array([r[n] for r in estimated], dtype=np.float64) for n in self.names}
        columns.update(derive([self.expression], columns, self.rankers, self.space, archs, self.reference))
        return [self._row(r, float(v)) for r, v in zip(estimated, columns[self.expression.text])]

    def _row(self, estimated: Row, value: float) -> Row:
        row = {"arch": estimated["arch"], "eval_seconds": sum(v for k, v in estimated.items() if k.endswith("_cpu_s"))}
        if math.isnan(value):
            return {**row, "status": "failed", "error": f"estimator {self.expression.text!r} is NaN for this child"}
        return {**row, "status": "ok", "estimate": value}


def estimate_objective(text: str, space: SearchSpace, pool: EvaluatorPool, store: PartStore, reference_size: int,
                       seed: int) -> EstimateObjective:
    """The ``estimate`` objective of expression ``text`` on ``pool``'s children. A fusion's reference
    population, ``reference_size`` children sampled by ``seed``, is scored on ``pool`` once: ``store``
    keeps its scores, so a resumed search reads them back."""
    expression = parse_expression(text)
    rankers = {expression.text: ranker_of(expression, space)} if expression.kind == "ranker" else {}
    names = tuple(base_names([expression], rankers))
    if expression.kind not in FUSIONS:
        return EstimateObjective(expression, names, space, rankers)
    archs = space.from_index_matrix(space.sample_index_matrix(reference_size, seed=seed))
    frame = estimate_resumably(lambda: contextlib.nullcontext(pool), space, archs, names, store)
    logger.info(f"{expression.text}: a reference of {len(archs)} children, sampled by seed {seed}")
    return EstimateObjective(expression, names, space, rankers, {n: frame[n].to_numpy(np.float64) for n in names})
