"""One explicit, versioned Arrow schema for evaluation rows, and row validation against it.

A Parquet dataset takes its schema from its first file, so a column that a later batch adds
silently disappears. Every file is therefore written with the full schema of
``result_schema(space)``: optional values are nulls, never missing columns. A column added to
the schema later (``ADDED_COLUMNS``) is filled in when a file written before it is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import pyarrow as pa

from raynas.errors import RaynasError, ResultsError
from raynas.results.objectives import OBJECTIVES
from raynas.space import Arch, SearchSpace

SCHEMA_VERSION = 2
VERSION_KEY = b"raynas.schema_version"
SPACE_KEY = b"raynas.space"
DIMENSIONS_KEY = b"raynas.dimensions"

STATUSES = ("ok", "failed", "infeasible", "duplicate")
SPLITS = ("val", "test", "calib", "train")
"""Which images an accuracy was measured on (the ``split`` column)."""
KEY_COLUMNS = ("run_id", "trial", "evaluator")


def objective_field(name: str) -> pa.Field:
    """The column of objective ``name``, typed from its record (counts are int64, measures float64)."""
    return pa.field(name, pa.int64() if OBJECTIVES[name].integral else pa.float64())


FIXED_FIELDS: tuple[pa.Field, ...] = (
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("trial", pa.int64(), nullable=False),
    pa.field("arch", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    objective_field("bn_score"),
    objective_field("estimate"),  # a training-free estimator expression's value (the search's ``estimator``)
    objective_field("accuracy"),
    pa.field("split", pa.string()),  # which images ``accuracy`` comes from: see SPLITS
    objective_field("top5"),
    objective_field("loss"),
    objective_field("flops"),
    objective_field("params"),
    objective_field("latency_ms"),
    pa.field("evaluator", pa.string(), nullable=False),
    pa.field("calib_images", pa.int64()),
    pa.field("checkpoint_id", pa.string()),
    pa.field("sampler", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("started_at", pa.float64()),  # unix seconds (time.time())
    pa.field("finished_at", pa.float64()),  # unix seconds
    pa.field("eval_seconds", pa.float64()),
    pa.field("node_id", pa.string()),
    pa.field("epochs", pa.int64()),  # training epochs behind ``accuracy`` (retraining stages)
    pa.field("target", pa.float64()),  # the cost budget a final-stage row was chosen for
)
FIXED_COLUMNS = tuple(f.name for f in FIXED_FIELDS)
ADDED_COLUMNS: dict[str, object] = {"estimate": None}
"""Columns added to schema version 2 after files were written with it, with what a row of such a
file holds there (``ResultStore`` reads those files as if written with the column)."""
REQUIRED_COLUMNS = tuple(f.name for f in FIXED_FIELDS if not f.nullable)


def conform(table: pa.Table, schema: pa.Schema, added: Mapping[str, object]) -> pa.Table:
    """``table`` in ``schema``'s columns and types; each column of ``added`` that a file written
    before it was added lacks is filled with its value there (what every older row had, or None)."""
    for name, value in added.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)


def dimension_type(choices: Sequence[Any]) -> pa.DataType:
    """int64 when every choice is an integer, string when every choice is text, else float64."""
    if all(isinstance(c, Integral) and not isinstance(c, bool) for c in choices):
        return pa.int64()
    if all(isinstance(c, str) for c in choices):
        return pa.string()
    if all(isinstance(c, Real) and not isinstance(c, bool) for c in choices):
        return pa.float64()
    raise ResultsError(f"dimension choices must be all int, all str or all numbers, got {list(choices)}")


def result_schema(space: SearchSpace) -> pa.Schema:
    """The fixed columns plus one nullable column per dimension of ``space``, in dimension order."""
    clash = sorted(set(FIXED_COLUMNS) & set(space.names))
    if clash:
        raise ResultsError(
            f"space {space.name!r}: dimension names must not reuse result columns, got {clash}"
        )
    dims = [pa.field(d.name, dimension_type(d.choices)) for d in space.dims]
    metadata = {
        VERSION_KEY: str(SCHEMA_VERSION).encode(),
        SPACE_KEY: space.name.encode(),
        DIMENSIONS_KEY: json.dumps(list(space.names)).encode(),
    }
    return pa.schema([*FIXED_FIELDS, *dims], metadata=metadata)


def rows_to_table(rows: Sequence[Mapping[str, Any]], space: SearchSpace) -> pa.Table:
    """Validate rows and build a table with every column of ``result_schema(space)``.

    ``arch`` may be an ``Arch`` or its canonical key; the dimension columns are derived from it,
    so a row never needs to (but may, consistently) spell them out. Float columns keep NaN as
    NaN; integer and string columns read NaN as null, as pandas writes missing values.
    """
    schema = result_schema(space)
    names = schema.names
    full = [_complete_row(i, row, space, names) for i, row in enumerate(rows)]
    arrays = [_column(field, [row[field.name] for row in full]) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _complete_row(i: int, row: Mapping[str, Any], space: SearchSpace, names: list[str]) -> dict[str, Any]:
    unknown = [k for k in row if k not in names]
    if unknown:
        raise ResultsError(f"row {i}: unknown column {unknown[0]!r}; valid columns: {', '.join(names)}")
    missing = [k for k in REQUIRED_COLUMNS if _missing(row.get(k))]
    if missing:
        raise ResultsError(
            f"row {i}: required column {missing[0]!r} is missing or None; required: {list(REQUIRED_COLUMNS)}"
        )
    if row["status"] not in STATUSES:
        raise ResultsError(f"row {i}: status must be one of {list(STATUSES)}, got {row['status']!r}")
    if not _missing(row.get("accuracy")) and row.get("split") not in SPLITS:
        raise ResultsError(f"row {i}: a row with an accuracy must say its split, one of {list(SPLITS)}; "
                           f"got {row.get('split')!r}")
    arch = _arch(i, row["arch"], space)
    out = {name: row.get(name) for name in names}
    out["arch"] = space.key(arch)
    for name, value in space.encode(arch).items():
        given = row.get(name)
        if not _missing(given) and given != value:
            raise ResultsError(f"row {i}: column {name!r} must match arch {out['arch']!r} ({value!r}), got {given!r}")
        out[name] = value
    return out


def _arch(i: int, value: Any, space: SearchSpace) -> Arch:
    if not isinstance(value, (Arch, str)):
        raise ResultsError(f"row {i}: arch must be an Arch or its key string, got {type(value).__name__}")
    try:
        return space.arch(value)
    except RaynasError as exc:
        raise ResultsError(f"row {i}: arch {value!r} is not in space {space.name!r}: {exc}") from exc


def _missing(value: Any) -> bool:
    """None, or NaN as pandas writes a missing value."""
    return value is None or (isinstance(value, Real) and value != value)


def _column(field: pa.Field, values: list[Any]) -> pa.Array:
    convert = _CONVERTERS[str(field.type)]
    out = []
    for i, value in enumerate(values):
        try:
            out.append(None if value is None else convert(value))
        except (TypeError, ValueError) as exc:
            raise ResultsError(f"row {i}: column {field.name!r} needs {field.type}, got {value!r} ({exc})") from None
    return pa.array(out, type=field.type)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        raise TypeError("a bool is not an integer")
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return int(float(value))
        raise ValueError("not a whole number")
    raise TypeError(f"{type(value).__name__} is not an integer")


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{type(value).__name__} is not a number")
    return float(value)


def _as_str(value: Any) -> str | None:
    if _missing(value):
        return None
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} is not a string")
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {"int64": _as_int, "double": _as_float, "string": _as_str}
