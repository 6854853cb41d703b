"""Cut back a study journal torn by a crash mid-append, before Optuna reads it.

Optuna's ``JournalFileBackend`` appends one JSON operation per line. A driver killed mid-write
leaves half a line; the next append is glued onto it, and from then on every read of the journal
fails with a JSONDecodeError. Operations replay in order, so any prefix of whole lines is a valid
journal: the repair keeps the longest prefix of complete, parseable lines and moves the rest to
``<journal>.torn-<timestamp>``. The trials that went with it come back from the Parquet rows
(``Search._recover``), which are written before the journal.

A crash mid-append also leaves Optuna's append lock (``<journal>.lock``), which would stall the
next append for its 30 s grace period; the caller holds the folder's lock, so it is stale.
"""

from __future__ import annotations

import json
import os
from raynas.logs import get_logger
from datetime import datetime
from pathlib import Path

logger = get_logger(__name__)

APPEND_LOCK_SUFFIX = ".lock"
"""Optuna's ``JournalFileSymlinkLock`` links ``<journal>.lock`` while it appends."""


def repair_journal(path: Path) -> int:
    """Cut ``path`` back to its longest valid prefix; returns how many bytes were moved aside.

    Call it only while holding the folder's lock: no one else may be appending.
    """
    path.with_name(path.name + APPEND_LOCK_SUFFIX).unlink(missing_ok=True)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    keep = valid_prefix(data)
    if keep == len(data):
        return 0
    note = path.with_name(f"{path.name}.torn-{datetime.now():%Y%m%dT%H%M%S%f}")
    note.write_bytes(data[keep:])
    with open(path, "r+b") as journal:
        journal.truncate(keep)
        os.fsync(journal.fileno())
    logger.warning("%s: dropped the last %d bytes, a record torn by a crash (kept in %s); the trials they held "
                   "are refilled from the Parquet rows", path, len(data) - keep, note.name)
    return len(data) - keep


def valid_prefix(data: bytes) -> int:
    """The length of the longest prefix of ``data`` made of whole lines that each parse as JSON."""
    end = 0
    while (newline := data.find(b"\n", end)) != -1:
        try:
            json.loads(data[end:newline])
        except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
            break
        end = newline + 1
    return end
