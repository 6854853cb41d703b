"""Results: one explicit, versioned Parquet schema and a crash-safe dataset store."""

from raynas.errors import ResultsError
from raynas.results.schema import (
    FIXED_COLUMNS,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
    STATUSES,
    result_schema,
    rows_to_table,
)
from raynas.results.store import BatchWrite, ResultStore

__all__ = [
    "FIXED_COLUMNS", "REQUIRED_COLUMNS", "SCHEMA_VERSION", "STATUSES", "BatchWrite", "ResultStore",
    "ResultsError", "result_schema", "rows_to_table",
]
