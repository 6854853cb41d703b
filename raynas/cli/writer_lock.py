"""One writer per output, for every command that writes one, taken before Ray starts or anything trains.

Two ``raynas proxy`` runs on one ``--out`` would each read ``proxy.parquet``, add their rows and
write it back: the later writer's file wins and the other's rows are gone. Two ``train`` runs of
one ``--name`` race on the same checkpoints. So ``main`` takes a ``FolderLock`` on the command's
output before it runs the command: a folder output is locked by ``FOLDER/.raynas.lock``, a file
output by ``.<file>.lock`` beside it. A second writer is refused at once, by one line naming the
holder; a lock left by a process that died is taken over, with a line that says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from raynas.results.folder_lock import FolderLock

FOLDER_LOCK = ".raynas.lock"


def output_of(args: argparse.Namespace) -> Path | None:
    """The folder or file the command writes, or None where two runs cannot collide (a new ``--name``
    or ``--new-run`` folder is made fresh, and commands without ``--out`` write nothing shared)."""
    out = getattr(args, "out", None)
    if out is None or getattr(args, "new_run", False):
        return None
    if args.command in ("train", "retrain"):
        return Path(out) / args.name if getattr(args, "name", None) else None
    return Path(out)


@contextmanager
def writer_lock(args: argparse.Namespace) -> Iterator[None]:
    """Hold the lock of the command's output while it runs (nothing where ``output_of`` is None).

    A lock file this made goes when the command ends, and so do folders made only to hold it:
    a refused input writes nothing."""
    out = output_of(args)
    if out is None:
        yield
        return
    is_file = bool(out.suffix) and not out.is_dir()  # a file: locked beside itself, its folder's other files free
    folder = out.parent if is_file else out
    lock = FolderLock(folder, f".{out.name}.lock" if is_file else FOLDER_LOCK, f"raynas {args.command}",
                      keep_file=False)
    made = _missing_parents(folder)
    try:
        with lock:
            yield
    finally:
        for path in made:  # deepest first; only folders that are still empty
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing
