"""The report of a search: its Pareto front, hypervolume and status counts, as files that last.

A run directory, as ``raynas search`` and ``raynas run`` write it and ``raynas report`` reads it::

    DIR/
      run.json          run metadata, one JSON object. The report reads:
                          "model"       the ``ModelRecord`` of what was searched (space definition,
                                        data: classes, channels, normalisation; BN layout)
                        or, where no record is known (and in files written before it existed):
                          "space"       the space definition (``SearchSpace.definition``), rebuilt
                                        with ``raynas.space.space_from_dict``; required unless
                                        ``--space`` is given
                          "space_name"  optional, the name if the definition has none
                          "num_classes" optional (default 10; 3 input channels), for costs
                                        the rows lack (a record gives classes and channels)
                        Writers add what else they know (run_id, checkpoint, sampler, seed, ...);
                        the report ignores other keys. ``write_run_metadata`` writes this file.
                          "runs"        run id -> identity of each search written here (what
                                        produced its rows; ``raynas.search.run_identity``)
      results/          the Parquet dataset, a ``ResultStore`` root: one row per evaluation
      report/           written by the report, replaced on every run:
        front.csv       the non-dominated rows, arch and objectives first, sorted by the first objective
        pareto.png      every usable row in grey, the front highlighted and joined as a step line
        summary.json    evaluator, objectives, directions, reference point and its sources, hypervolume,
                        counts, front archs

Which rows: one evaluator's rows at a time, because a BN score and a calibrated accuracy are
not comparable. By default that is "calibrate" (calibrated accuracy) when such rows exist, else
"bn_score", else "estimate" (a training-free estimator's score). Rows whose status is not "ok",
or that lack an objective, are excluded and counted. The same architecture evaluated twice with
the same objective values counts once on the front. FLOPs and params that a row lacks are filled
in from the analytic cost model of the space, since they follow from the architecture alone.

The hypervolume's reference point is fixed by the space and the objectives (``hv_reference``:
the largest child's cost, accuracy 0, BN score 0), or passed by the user, so two runs' normalized
hypervolumes compare; summary.json says where each objective's reference value came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from raynas.cost import CostModel
from raynas.errors import RaynasError, ResultsError
from raynas.model_record import ModelRecord
from raynas.results.objectives import OBJECTIVES, Direction, check_objectives, directions_of
from raynas.results.pareto import hypervolume, pareto_mask, usable_rows
from raynas.results.hv_reference import HypervolumeBox, hypervolume_box, normalized_hypervolume
from raynas.results.store import ResultStore
from raynas.space import SearchSpace, load_space, space_from_dict

RUN_JSON = "run.json"
RUNS_KEY = "runs"
MODEL_KEY = "model"
RESULTS_DIR = "results"
REPORT_DIR = "report"
PREFERRED_EVALUATORS = (("calibrate", "accuracy"), ("proxy", "accuracy"), ("bn_score", "bn_score"),
                        ("estimate", "estimate"))
COST_COLUMNS = ("flops", "params")

# column -> (label, unit, scale applied for display)
UNITS: dict[str, tuple[str, str, float]] = {
    name: (OBJECTIVES[name].label, OBJECTIVES[name].unit, OBJECTIVES[name].scale)
    for name in ("flops", "params", "latency_ms", "accuracy", "top5", "loss", "bn_score", "estimate")  # table order
}


# --- the run directory --------------------------------------------------------------------
@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (see the module docstring for the layout)."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    @property
    def results(self) -> Path:
        return self.root / RESULTS_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR


def write_run_metadata(root: str | os.PathLike[str], model: ModelRecord | SearchSpace, **extra: Any) -> Path:
    """Write ``DIR/run.json`` with the model record (or the bare space), so the results outlive the space file.

    The identities of the folder's searches (``runs``: run id -> identity) are merged into those
    already recorded, never dropped: whoever rewrites the file, a later resume of any of them is
    still checked against what produced it.
    """
    run = RunDir(Path(root))
    runs = {**(read_run_metadata(run.root).get(RUNS_KEY) or {}), **extra.pop(RUNS_KEY, {})}
    described = ({MODEL_KEY: model.to_dict()} if isinstance(model, ModelRecord)
                 else {"space": model.definition, "space_name": model.name})
    meta = {**described, **extra, **({RUNS_KEY: runs} if runs else {})}
    _write_atomic(run.run_json, json.dumps(meta, indent=2, default=str) + "\n")
    return run.run_json


def read_run_metadata(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``DIR/run.json`` as a dict, or {} when the file does not exist."""
    path = RunDir(Path(root)).run_json
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: malformed JSON: {err}") from err
    if not isinstance(meta, dict):
        raise ResultsError(f"{path}: run metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def run_space(root: Path, meta: Mapping[str, Any], space: str | SearchSpace | None) -> SearchSpace:
    """An explicit space wins; else the definition in run.json; else a clear error."""
    if isinstance(space, SearchSpace):
        return space
    if space is not None:
        return load_space(space)
    if MODEL_KEY in meta:
        return run_model(root, meta).space
    if "space" in meta:
        name = str(meta.get("space_name", "space"))
        return space_from_dict(meta["space"], source=str(root / RUN_JSON), default_name=name)
    raise ResultsError(
        f"{root}: no {RUN_JSON} with a 'space' definition; pass the space (--space NAME or a .yaml path)"
    )


# --- the report ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    """The front of one evaluator's rows over the chosen objectives, and how it was reached."""

    space: SearchSpace
    evaluator: str
    objectives: tuple[str, ...]
    rows: pd.DataFrame  # usable rows: status ok, every objective present, duplicates dropped
    front: pd.DataFrame
    reference: tuple[float, ...]
    hypervolume: float
    hypervolume_normalized: float  # share of the box between the ideal point and the reference
    reference_sources: tuple[str, ...]  # per objective: space, bound, rows or user (``hv_reference``)
    status_counts: dict[str, int]  # this evaluator's rows, per status
    missing_objective: int  # rows with status ok but no value for some objective
    filled_costs: int  # rows whose FLOPs or params came from the cost model

    @property
    def directions(self) -> list[Direction]:
        return directions_of(self.objectives)

    @property
    def total(self) -> int:
        return sum(self.status_counts.values())

    @property
    def excluded(self) -> int:
        """Rows of this evaluator left out: not "ok", or missing an objective."""
        return self.total - self.status_counts.get("ok", 0) + self.missing_objective

    def counts_line(self) -> str:
        reasons = [f"{n} {s}" for s, n in sorted(self.status_counts.items()) if s != "ok"]
        reasons.append(f"{self.missing_objective} ok but missing an objective")
        return (f"{len(self.front)} on the {len(self.objectives)}-objective front of {len(self.rows)} usable rows; "
                f"{self.excluded} of {self.total} excluded ({', '.join(reasons)})")

    def summary(self) -> dict[str, Any]:
        """What summary.json holds: enough to compare runs without re-reading the Parquet files."""
        return {
            "space": self.space.name, "evaluator": self.evaluator, "objectives": list(self.objectives),
            "directions": self.directions, "reference": list(self.reference),
            "reference_sources": list(self.reference_sources),
            "hypervolume": self.hypervolume, "hypervolume_normalized": self.hypervolume_normalized,
            "rows": self.total, "usable": len(self.rows), "excluded": self.excluded,
            "status_counts": self.status_counts, "missing_objective": self.missing_objective,
            "filled_costs": self.filled_costs, "front_size": len(self.front),
            "front": self.front["arch"].tolist(),
        }


def run_model(root: Path, meta: Mapping[str, Any]) -> ModelRecord:
    """The model record of run.json; a malformed one is a ``ResultsError`` naming the file."""
    try:
        return ModelRecord.from_dict(meta[MODEL_KEY], source=str(root / RUN_JSON))
    except RaynasError as err:
        raise ResultsError(str(err)) from None


def run_cost_model(root: Path, meta: Mapping[str, Any], space: SearchSpace) -> CostModel:
    """The cost model of the run's classifier: classes and channels from its record, else ``num_classes``."""
    if MODEL_KEY in meta:
        record = run_model(root, meta)
        return CostModel(space, record.num_classes, record.in_channels)
    return CostModel(space, num_classes=int(meta.get("num_classes", 10)))


def load_report(
    root: str | os.PathLike[str],
    objectives: Sequence[str] | None = None,
    evaluator: str | None = None,
    space: str | SearchSpace | None = None,
    run_id: str | None = None,
    reference: Sequence[float] | None = None,
) -> Report:
    """Read ``DIR/results`` and build the report; defaults are described in the module docstring."""
    run = RunDir(Path(root))
    if not run.root.is_dir():
        raise ResultsError(f"{run.root}: no such run directory; expected {RUN_JSON} and {RESULTS_DIR}/ inside it")
    meta = read_run_metadata(run.root)
    the_space = run_space(run.root, meta, space)
    # nullable integers keep FLOPs, params and integer dimensions integral next to failed rows
    df = ResultStore(run.results, the_space).read().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    if df.empty:
        raise ResultsError(f"{run.results}: no result rows; run a search into {run.root} first")
    return build_report(df, the_space, objectives, evaluator, run_cost_model(run.root, meta, the_space),
                        run_id, meta.get("run_id"), reference)


def build_report(
    df: pd.DataFrame,
    space: SearchSpace,
    objectives: Sequence[str] | None = None,
    evaluator: str | None = None,
    cost: CostModel | None = None,
    run_id: str | None = None,
    recorded_run: str | None = None,
    reference: Sequence[float] | None = None,
) -> Report:
    """The report of a results table already in memory; ``reference`` overrides the fixed one.

    ``cost`` fills the costs rows lack and bounds the reference (default: ``space`` for 10
    classes of 3-channel images)."""
    cost = CostModel(space) if cost is None else cost
    chosen = choose_evaluator(df, evaluator)
    names = check_objectives(objectives) if objectives else default_objectives(chosen)
    rows = choose_run(df[df["evaluator"] == chosen], run_id, recorded_run)
    rows, filled = fill_costs(rows, cost)
    ok = rows[rows["status"] == "ok"]
    complete = usable_rows(ok, names)
    if complete.empty:
        raise ResultsError(
            f"no {chosen!r} row has status 'ok' and values for objectives {names}; "
            f"status counts: {_status_counts(rows)}"
        )
    usable = complete.drop_duplicates(subset=["arch", *names])
    box_of = _Box(cost, reference)
    return _assemble(space, chosen, names, usable, _status_counts(rows), len(ok) - len(complete), filled, box_of)


@dataclass(frozen=True)
class _Box:
    """What the hypervolume's fixed reference needs besides the rows."""

    cost: CostModel
    user: Sequence[float] | None

    def __call__(self, names: list[str], dirs: Sequence[str], values: np.ndarray) -> HypervolumeBox:
        return hypervolume_box(names, dirs, values, self.cost, self.user)


def _assemble(space: SearchSpace, evaluator: str, names: list[str], usable: pd.DataFrame,
              counts: dict[str, int], missing: int, filled: int, box_of: _Box) -> Report:
    values = usable[names].to_numpy(dtype=np.float64)
    dirs = directions_of(names)
    box = box_of(names, dirs, values)
    volume = hypervolume(values, dirs, box.reference)
    front = usable[pareto_mask(values, dirs)].sort_values(names, kind="stable")
    return Report(space, evaluator, tuple(names), usable.reset_index(drop=True), front.reset_index(drop=True),
                  tuple(float(r) for r in box.reference), volume, normalized_hypervolume(volume, box, dirs),
                  box.sources, counts, missing, filled)


def _status_counts(rows: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in rows["status"].value_counts().sort_index().items()}


def choose_evaluator(df: pd.DataFrame, evaluator: str | None) -> str:
    """The named evaluator, else calibrated accuracy rows if any, else BN-score rows, else the only one."""
    present = sorted(df["evaluator"].dropna().unique())
    if evaluator is not None:
        if evaluator not in present:
            raise ResultsError(f"no rows of evaluator {evaluator!r}; evaluators in the results: {present}")
        return evaluator
    for name, _ in PREFERRED_EVALUATORS:
        if name in present:
            return name
    if len(present) == 1:
        return str(present[0])
    raise ResultsError(f"the results hold several evaluators {present}; pick one with --evaluator")


def choose_run(rows: pd.DataFrame, run_id: str | None, recorded: str | None) -> pd.DataFrame:
    """One search's rows of an evaluator: a folder may hold several searches (``--run-id``), and a
    front over their union is one that no search found. Unnamed: the only one, else the one
    ``run.json`` names last, else an error listing them."""
    present = sorted(str(r) for r in rows["run_id"].dropna().unique())
    if run_id is None and len(present) <= 1:
        return rows
    chosen = run_id if run_id is not None else recorded if recorded in present else None
    if chosen is None:
        raise ResultsError(f"the results hold several searches {present}; pick one with --run-id")
    if chosen not in present:
        raise ResultsError(f"no rows of search {chosen!r}; searches in the results: {present}")
    return rows[rows["run_id"] == chosen]


def default_objectives(evaluator: str) -> list[str]:
    """[accuracy, flops] for calibrated or proxy rows, [estimate, flops] for estimator rows, [bn_score, flops]
    for BN-score rows (and any other)."""
    quality = dict(PREFERRED_EVALUATORS).get(evaluator, "bn_score")
    return [quality, "flops"]


def fill_costs(rows: pd.DataFrame, cost: CostModel) -> tuple[pd.DataFrame, int]:
    """Fill missing FLOPs/params of ok rows from the analytic cost model; return the count filled."""
    need = (rows["status"] == "ok") & rows[list(COST_COLUMNS)].isna().any(axis=1)
    if not need.any():
        return rows, 0
    costs = cost.costs([cost.space.arch(k) for k in rows.loc[need, "arch"]])
    rows = rows.copy()
    for column in COST_COLUMNS:
        known = pd.Series(costs[column], index=rows.index[need], dtype="Int64")
        rows[column] = rows[column].astype("Int64").fillna(known)
    return rows, int(need.sum())


# --- output -------------------------------------------------------------------------------
def axis_label(column: str) -> str:
    """``"FLOPs (M MACs, lower is better)"``: the unit matches ``display_values``."""
    name, unit, _ = UNITS.get(column, (column, "", 1.0))
    better = {"min": "lower", "max": "higher"}.get(_direction(column), "")
    parts = [p for p in (unit, f"{better} is better" if better else "") if p]
    return f"{name} ({', '.join(parts)})" if parts else name


def display_values(df: pd.DataFrame, column: str) -> np.ndarray:
    """A column in display units (FLOPs in M, accuracy in %)."""
    return df[column].to_numpy(dtype=np.float64) * UNITS.get(column, (column, "", 1.0))[2]


def _direction(column: str) -> str:
    return OBJECTIVES[column].direction if column in OBJECTIVES else ""


def plot_front(df: pd.DataFrame, x: str, y: str, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write a PNG: usable rows of ``df`` in grey, the (x, y) front highlighted as a step line.

    The highlighted front is that of the two plotted objectives. The step follows what a budget
    buys: for a "min" x, the best y holds until the next front point (steps after each point);
    for a "max" x, it holds back to the previous one. Uses matplotlib's object API with the Agg
    canvas, so no display is needed and pyplot's global state is never touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = usable_rows(df, [x, y])
    front = rows[pareto_mask(rows[[x, y]].to_numpy(dtype=np.float64), directions_of([x, y]))].sort_values([x, y])
    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(display_values(rows, x), display_values(rows, y), s=12, c="0.7", label=f"all ({len(rows)})")
    where: Literal["post", "pre"] = "post" if _direction(x) == "min" else "pre"
    ax.step(display_values(front, x), display_values(front, y), where=where, color="tab:red", lw=1.5)
    ax.scatter(display_values(front, x), display_values(front, y), s=28, c="tab:red", zorder=3,
               label=f"Pareto front of {x}, {y} ({len(front)})")
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.set_title(title or f"{len(front)} on the front of {len(rows)} rows", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", bbox_inches="tight")
    return out


def format_table(front: pd.DataFrame, objectives: Sequence[str] | None = None) -> str:
    """A fixed-width table: rank, arch key, each objective and params, in display units."""
    names = list(objectives) if objectives else [c for c in UNITS if c in front.columns]
    columns = [*names, *(["params"] if "params" not in names and "params" in front.columns else [])]
    headers = ["#", "arch", *(_short_header(c) for c in columns)]
    records = front.to_dict("records")
    body = [[str(i + 1), str(r["arch"]), *(_cell(r[c], c) for c in columns)] for i, r in enumerate(records)]
    widths = [max(len(r[j]) for r in [headers, *body]) for j in range(len(headers))]
    lines = [_line(headers, widths), _line(["-" * w for w in widths], widths), *(_line(r, widths) for r in body)]
    return "\n".join(lines)


def _short_header(column: str) -> str:
    name, unit, _ = UNITS.get(column, (column, "", 1.0))
    return f"{name} ({unit})" if unit and len(unit) <= 6 else name


def _cell(value: Any, column: str) -> str:
    if pd.isna(value):
        return "-"
    scale = UNITS.get(column, (column, "", 1.0))[2]
    return f"{float(value) * scale:,.4g}" if scale != 1.0 or isinstance(value, float) else str(value)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """Text columns left-aligned, numbers right-aligned."""
    return "  ".join(c.ljust(w) if j in (1,) else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths))).rstrip()


def write_report(report: Report, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write front.csv, pareto.png (first two objectives) and summary.json into ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "front.csv", "png": folder / "pareto.png", "json": folder / "summary.json"}
    _write_atomic(paths["csv"], _front_for_csv(report).to_csv(index=False))
    if len(report.objectives) >= 2:
        x, y = _plot_axes(report.objectives)
        title = f"{report.space.name} / {report.evaluator}: {report.counts_line()}"
        plot_front(report.rows, x, y, paths["png"], title=title)
    else:  # one objective has no trade-off to draw; leave no stale plot behind
        paths.pop("png").unlink(missing_ok=True)
    _write_atomic(paths["json"], json.dumps({**report.summary(), "files": {k: p.name for k, p in paths.items()}},
                                            indent=2) + "\n")
    return paths


def _plot_axes(objectives: Sequence[str]) -> tuple[str, str]:
    """Cost on x, quality on y when one of the first two objectives is a cost; else as given."""
    x, y = objectives[0], objectives[1]
    return (y, x) if _direction(x) == "max" and _direction(y) == "min" else (x, y)


def _front_for_csv(report: Report) -> pd.DataFrame:
    """Arch and objectives first, then the other columns that hold any value."""
    front = report.front.dropna(axis=1, how="all")
    first = ["arch", *report.objectives]
    return front[[*first, *(c for c in front.columns if c not in first)]]


def _write_atomic(path: Path, text: str) -> None:
    """Temp file in the same folder, then ``os.replace``: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
