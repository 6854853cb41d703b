"""SIGTERM handled like Ctrl-C: one clean, prompt stop that a rerun resumes from.

Slurm, Kubernetes and ``kill`` end a job with SIGTERM. ``ray.init`` installs a handler that calls
``sys.exit`` from wherever the main thread happens to be, and a plain ``kill`` without one ends
the interpreter with Ray's threads still running; both have ended in native aborts. Raising an
exception instead lets every ``finally`` and every ``with`` of the run close what it opened
(evaluator actors, the writer lock, half-written files) before the command returns exit 143.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM. A ``KeyboardInterrupt``, so that whatever cleans up
    after Ctrl-C cleans up after SIGTERM too."""


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """Make SIGTERM raise ``Terminated`` in the main thread (call again after ``ray.init``, which
    installs its own handler). Signal handlers can only be set from the main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(interrupt: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
