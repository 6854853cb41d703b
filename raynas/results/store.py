"""A Parquet dataset directory of evaluation rows that survives crashes and resumes idempotently.

Each ``write_batch`` adds one closed file, ``part-<time_ns>-<uuid>.parquet``. A
``ParquetWriter`` file is unreadable until closed, so appending to one open file would lose
everything on a crash; one closed file per batch loses at most the batch in flight.

Atomicity:
- Local filesystem: the batch goes to ``.tmp-<uuid>.parquet`` in the same directory, is
  fsynced and closed, then ``os.replace``d to its ``part-`` name. A crash leaves at most a
  ``.tmp-`` file, which readers ignore.
- Object stores (``s3://``, ``gs://``, any non-local pyarrow filesystem): the part is written
  directly under its final name. One PUT (or a multipart upload, completed in one call) is
  atomic there: the object appears whole or not at all, and a rename would be a copy.

Duplicates are refused per ``(run_id, trial, evaluator)`` for one writer at a time; two
processes writing the same store concurrently may both write a key.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raynas.errors import ResultsError
from raynas.results.schema import (
    ADDED_COLUMNS,
    DIMENSIONS_KEY,
    KEY_COLUMNS,
    SCHEMA_VERSION,
    VERSION_KEY,
    conform,
    result_schema,
    rows_to_table,
)
from raynas.space import SearchSpace

PART_PREFIX = "part-"
TMP_PREFIX = ".tmp-"
SUFFIX = ".parquet"

Key = tuple[str, int, str]


@dataclass(frozen=True)
class BatchWrite:
    """What one ``write_batch`` did: the new part file (None when nothing was new) and counts."""

    path: str | None
    written: int
    skipped: int


class ResultStore:
    """Evaluation rows of one search space, as a Parquet dataset directory.

    ``root`` is a local path or a URI that ``pyarrow.fs.FileSystem.from_uri`` understands
    (``s3://bucket/prefix``, ``gs://...``, ``file:///...``); pass ``filesystem`` to use a
    configured pyarrow filesystem, with ``root`` a path inside it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        space: SearchSpace,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        self.fs, self.root = _resolve(root, filesystem)
        self.space = space
        self.schema = result_schema(space)
        self._keys: set[Key] = set()
        self._seen: set[str] = set()
        self._root_made = False

    def __repr__(self) -> str:
        return f"ResultStore({self.root!r}, space={self.space.name!r}, fs={self.fs.type_name})"

    # --- writing ------------------------------------------------------------------------
    def write_batch(self, rows: Sequence[Mapping[str, Any]], *, skip_existing: bool = True) -> BatchWrite:
        """Validate ``rows`` and write them as one new part file.

        With ``skip_existing`` (the default) rows whose ``(run_id, trial, evaluator)`` is
        already stored are dropped, so a resumed search can re-submit a batch safely. A batch
        that repeats a key within itself is refused: which of the two rows is right is unknown.
        """
        table = rows_to_table(rows, self.space)
        keys = _table_keys(table)
        _check_unique(keys)
        known = self.keys()
        if skip_existing:
            table = table.filter(pa.array([k not in known for k in keys], type=pa.bool_()))
        if table.num_rows == 0:
            return BatchWrite(None, 0, len(keys))
        path = self._write(table)
        self._seen.add(path)
        self._keys.update(_table_keys(table))
        return BatchWrite(path, table.num_rows, len(keys) - table.num_rows)

    def _write(self, table: pa.Table) -> str:
        if not self._root_made:
            self.fs.create_dir(self.root, recursive=True)
            self._root_made = True
        name = f"{PART_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex}{SUFFIX}"
        final = f"{self.root}/{name}"
        if isinstance(self.fs, pafs.LocalFileSystem):
            _write_local_atomic(table, self.root, final)
        else:
            with self.fs.open_output_stream(final) as out:
                pq.write_table(table, out)
        return final

    # --- reading ------------------------------------------------------------------------
    def parts(self) -> list[str]:
        """Paths of the visible part files, oldest first; ``.tmp-`` and other files are ignored."""
        selector = pafs.FileSelector(self.root, allow_not_found=True, recursive=False)
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.startswith(PART_PREFIX)
            and info.base_name.endswith(SUFFIX)
        )

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every stored row, with every column of the explicit schema (or just ``columns``)."""
        names = self._check_columns(columns)
        target = pa.schema([self.schema.field(n) for n in names], metadata=self.schema.metadata)
        tables = [self._read_part(path, names) for path in self.parts()]
        if not tables:
            return target.empty_table()
        return pa.concat_tables(t.cast(target) for t in tables)

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """``read()`` as a DataFrame; null integers become NaN, as pandas represents them."""
        return self.read(columns).to_pandas()

    def keys(self) -> set[Key]:
        """Every stored ``(run_id, trial, evaluator)``; reads only part files not seen before."""
        for path in self.parts():
            if path not in self._seen:
                self._keys.update(_table_keys(self._read_part(path, list(KEY_COLUMNS))))
                self._seen.add(path)
        return set(self._keys)

    def trials(self) -> set[tuple[str, int]]:
        """Every stored ``(run_id, trial)``, whatever evaluated it: what a resumed search skips."""
        return {(run_id, trial) for run_id, trial, _ in self.keys()}

    def _read_part(self, path: str, columns: list[str]) -> pa.Table:
        """One part file, checked against the schema; a corrupt part is named so it can be moved aside.
        A part written before a column was added (``ADDED_COLUMNS``) reads with that column filled in."""
        try:
            with self.fs.open_input_file(path) as f:
                parquet = pq.ParquetFile(f)
                found = parquet.schema_arrow
                _check_part(path, found, self.schema, self.space.name)
                table = parquet.read(columns=[c for c in columns if c in found.names])
        except (pa.ArrowException, OSError) as err:
            detail = " ".join(str(err).split())
            raise ResultsError(f"{path}: not a readable Parquet file ({detail}); move it out of {self.root} "
                               f"to read the other parts") from err
        wanted = pa.schema([self.schema.field(c) for c in columns])
        return conform(table, wanted, {c: v for c, v in ADDED_COLUMNS.items() if c in columns})

    def _check_columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return list(self.schema.names)
        unknown = [c for c in columns if c not in self.schema.names]
        if unknown:
            raise ResultsError(f"unknown column {unknown[0]!r}; valid columns: {', '.join(self.schema.names)}")
        return list(columns)


def _resolve(root: str | os.PathLike[str], filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str]:
    """A filesystem and a path inside it; plain paths are local and made absolute."""
    text = os.fspath(root)
    if filesystem is not None:
        return filesystem, text.rstrip("/")
    if "://" in text:
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(text)


def _write_local_atomic(table: pa.Table, folder: str, final: str) -> None:
    """Write a closed, fsynced temp file beside ``final``, then rename it into place."""
    tmp = os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}{SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_part(path: str, found: pa.Schema, expected: pa.Schema, space_name: str) -> None:
    """Refuse files of another schema version or another space, naming what differs."""
    metadata = found.metadata or {}
    if VERSION_KEY not in metadata:
        raise ResultsError(f"{path}: not a raynas results file (no {VERSION_KEY.decode()!r} metadata)")
    version = metadata[VERSION_KEY].decode()
    if version != str(SCHEMA_VERSION):
        raise ResultsError(
            f"{path}: written with results schema version {version}, but this raynas reads version "
            f"{SCHEMA_VERSION}; read it with the raynas that wrote it, or write to a new directory"
        )
    older = pa.schema([f for f in expected if f.name in found.names or f.name not in ADDED_COLUMNS])
    if found.remove_metadata().equals(older.remove_metadata()):  # written before ADDED_COLUMNS, or with them
        return
    missing = [n for n in expected.names if n not in found.names]
    extra = [n for n in found.names if n not in expected.names]
    changed = [n for n in expected.names if n in found.names and found.field(n) != expected.field(n)]
    dims = metadata.get(DIMENSIONS_KEY, b"?").decode()
    raise ResultsError(
        f"{path}: columns must match space {space_name!r}, but the file (dimensions {dims}) has "
        f"missing={missing}, extra={extra}, changed types={changed}"
    )


def _table_keys(table: pa.Table) -> list[Key]:
    columns = [table.column(name).to_pylist() for name in KEY_COLUMNS]
    return list(zip(*columns))


def _check_unique(keys: list[Key]) -> None:
    seen: set[Key] = set()
    for key in keys:
        if key in seen:
            raise ResultsError(f"a batch must not repeat (run_id, trial, evaluator), got {key} twice")
        seen.add(key)
