"""One writer per run folder: two searches appending to one folder would lose one's results.

``fcntl.flock`` on ``DIR/search.lock``. The kernel drops the lock when its holder exits, SIGKILL
included, so the folder of a crashed search is never left blocked. The file stays (unlinking a lock
file races with its next user) and holds the holder's pid, which a refusal names.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from raynas.errors import ConfigError

LOCK_FILE = "search.lock"


class FolderLock:
    """An exclusive, non-blocking lock on a folder, held from ``acquire`` to ``release``.

    Two locks on one folder conflict even within one process (each opens the file anew).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._file: BinaryIO | None = None  # a file object, so a lock dropped unreleased goes with it

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> Self:
        """Take the lock, or raise ``ConfigError`` naming the pid that holds it."""
        if self._file is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        file = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+b", buffering=0)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = file.read(64).decode(errors="replace").strip() or "unknown"
            file.close()
            raise ConfigError(f"{self.folder} is in use by another search (pid {holder}): two searches writing one "
                              "folder would lose one's results; wait for it to end, or pass another --out") from None
        file.truncate(0)
        file.write(f"{os.getpid()}\n".encode())
        self._file = file
        return self

    def release(self) -> None:
        """Let the next search in (closing the descriptor drops the flock); a no-op when not held."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()
