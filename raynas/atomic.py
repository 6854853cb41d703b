"""Writing a file so that a reader sees the old file or the whole new one, never a half-written one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """``write`` a temporary sibling of ``path`` (``.tmp-NAME``), then move it into place in one step."""
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    os.replace(tmp, path)
    return path
