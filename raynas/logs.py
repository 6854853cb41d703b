"""The ``raynas`` logger: progress on stdout, problems on stderr, one verbosity knob.

Like ``optuna.logging``, raynas installs its own handlers on its top logger the first time a
module asks for a logger, so a Python driver sees the same progress lines as the CLI without
configuring ``logging`` itself; ``set_verbosity`` (the CLI's ``-q``/``-v``) turns them down or
up. Every line starts with ``[raynas]``. Records do not propagate to the root logger, so a
driver that configures ``logging`` gets each line once.

``Progress`` is the one progress line of every long stage: count, rate and ETA, at most one
line every ``every_seconds`` (and always the last).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

ROOT = "raynas"
FORMAT = "[raynas] %(message)s"
_configured = False


class _CurrentStream(logging.StreamHandler):
    """A handler writing to ``sys.stdout`` or ``sys.stderr`` as they are when a record is
    emitted, so redirected or captured streams (pytest's ``capsys``) see every line."""

    def __init__(self, name: str, levels: tuple[int, int]) -> None:
        super().__init__()
        self._name, (self._low, self._high) = name, levels
        self.setFormatter(logging.Formatter(FORMAT))
        self.addFilter(lambda record: self._low <= record.levelno < self._high)

    @property
    def stream(self) -> TextIO:
        return getattr(sys, self._name)

    @stream.setter
    def stream(self, value: TextIO) -> None:  # logging.StreamHandler.__init__ assigns it
        pass


def _configure() -> None:
    global _configured
    if _configured:
        return
    top = logging.getLogger(ROOT)
    top.addHandler(_CurrentStream("stdout", (logging.NOTSET, logging.WARNING)))
    top.addHandler(_CurrentStream("stderr", (logging.WARNING, logging.CRITICAL + 1)))
    top.setLevel(logging.INFO)
    top.propagate = False
    _configured = True


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``raynas.*``), with raynas's handlers installed."""
    _configure()
    return logging.getLogger(name)


def set_verbosity(level: int) -> None:
    """Show raynas lines of ``level`` and above: ``logging.WARNING`` hides progress (``-q``),
    ``logging.DEBUG`` adds detail (``-v``)."""
    _configure()
    logging.getLogger(ROOT).setLevel(level)


class Progress:
    """``what done/total (rate unit/s, ETA N s)``: one line per update, at most every ``every_seconds``."""

    def __init__(self, logger: logging.Logger, what: str, total: int, unit: str = "", every_seconds: float = 10.0,
                 done: int = 0) -> None:
        self.logger, self.what, self.total, self.unit = logger, what, total, unit
        self.every, self.first_done = every_seconds, done
        self.started = self.shown = time.monotonic()

    def update(self, done: int, detail: str = "") -> None:
        now = time.monotonic()
        if done < self.total and now - self.shown < self.every:
            return
        self.shown = now
        self.logger.info("%s %d/%d%s%s", self.what, done, self.total, self.rate_and_eta(done, now),
                         f"; {detail}" if detail else "")

    def rate_and_eta(self, done: int, now: float | None = None) -> str:
        """`` (2.5 trials/s, ETA 40 s)`` from the work done since this ``Progress`` began."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        new = done - self.first_done
        if new <= 0 or elapsed <= 0:
            return ""
        rate = new / elapsed
        unit = f" {self.unit}" if self.unit else ""
        eta = f", ETA {format_seconds((self.total - done) / rate)}" if done < self.total else ""
        return f" ({rate:.3g}{unit}/s{eta})"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 4 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
