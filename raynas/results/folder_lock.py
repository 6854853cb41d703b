"""One writer per run folder: two runs appending to one folder would lose one's results.

``fcntl.flock`` on a lock file in the folder (``search.lock`` for a search; every writing command
also takes ``.raynas.lock``, ``raynas.cli.writer_lock``). The kernel drops the lock when its holder
exits, SIGKILL included, so the folder of a crashed run is never left blocked. The file stays
(unlinking a lock file races with its next user) and holds the holder's host, pid, command and
start time, which a refusal names; a clean release empties it, so a lock found with a holder
recorded in it was left by a process that died, and taking it over says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from raynas.errors import ConfigError
from raynas.logs import get_logger

logger = get_logger(__name__)
LOCK_FILE = "search.lock"


class FolderLock:
    """An exclusive, non-blocking lock on a folder, held from ``acquire`` to ``release``.

    Two locks on one folder conflict even within one process (each opens the file anew).
    """

    def __init__(self, folder: str | os.PathLike[str], name: str = LOCK_FILE, what: str = "search",
                 keep_file: bool = True) -> None:
        self.folder, self.name, self.what, self.keep_file = Path(folder), name, what, keep_file
        """``keep_file=False``: a lock file this lock created goes when it is released, so a folder
        keeps no trace of a writer that ended (or was refused) cleanly."""
        self._file: BinaryIO | None = None  # a file object, so a lock dropped unreleased goes with it
        self._created = False

    @property
    def path(self) -> Path:
        return self.folder / self.name

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> Self:
        """Take the lock, or raise ``ConfigError`` naming the process that holds it."""
        if self._file is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        file = self._locked_file()
        left = _describe(file.read(4096).decode(errors="replace"), missing="")
        if left:
            logger.warning(f"{self.folder}: taking over the lock of a {self.what} that did not end cleanly ({left})")
        file.seek(0)
        file.truncate(0)
        file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.what,
                               "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode() + b"\n")
        self._file = file
        return self

    def _locked_file(self) -> BinaryIO:
        """The lock file, opened and flocked; retried when a releasing holder removed it meanwhile
        (a lock on a removed file would guard nothing)."""
        while True:
            created = not self.path.exists()
            file = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+b", buffering=0)
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(file.read(4096).decode(errors="replace"))
                file.close()
                raise ConfigError(f"{self.folder} is in use by another {self.what} ({holder}): two writers of one "
                                  "folder would lose one's results; wait for it to end, or pass another --out") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(file.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._created = created
                return file
            file.close()

    def release(self) -> None:
        """Let the next writer in (closing the descriptor drops the flock); a no-op when not held."""
        if self._file is not None:
            if self._created and not self.keep_file:
                self.path.unlink(missing_ok=True)  # while still held: the next writer makes a new one
            else:
                self._file.truncate(0)  # an empty lock file: its last holder ended cleanly
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


def _describe(text: str, missing: str = "pid unknown") -> str:
    """``pid 123 on host, since 2026-12-07 19:40:00`` from a lock file's record (older files hold a bare pid)."""
    text = text.strip()
    if not text:
        return missing
    try:
        record = json.loads(text)
        return f"pid {record['pid']} on {record['host']}, since {record['started']}"
    except (ValueError, KeyError, TypeError):
        return f"pid {text.split()[0]}"
