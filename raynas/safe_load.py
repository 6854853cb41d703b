"""Loading a ``.pt`` file raynas wrote: tensors and plain values only, and raynas's own errors.

``torch.load(weights_only=True)`` refuses a file that would import or run code, but its error is
pages long and ends with advice to retry with ``weights_only=False``: the one thing never to do
with such a file. Every raynas load goes through ``load_tensors``, which says in one line what
was wrong with which file.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
import torch

from raynas.errors import ConfigError


def load_tensors(file: str | os.PathLike[str], what: str, device: str | torch.device = "cpu") -> object:
    """The contents of ``file``; ``what`` names it in errors ("checkpoint", "child's weights file")."""
    file = Path(file)
    try:
        return torch.load(file, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        code = re.search(r"GLOBAL (\S+)", str(err))
        if code:
            raise ConfigError(
                f"{file} was refused: it asks to load {code.group(1)}, but a raynas {what} holds only tensors "
                f"and plain values; it was not written by raynas or was tampered with, so do not use it"
            ) from None
        raise ConfigError(f"{file} is not a readable {what} (truncated or corrupt): {_reason(err)}") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise ConfigError(f"{file} is not a readable {what} (truncated or corrupt): {_reason(err)}") from None
    except OSError as err:
        raise ConfigError(f"{file} cannot be read: {err}") from None


def load_weights(file: str | os.PathLike[str], what: str) -> Mapping[str, torch.Tensor]:
    """A state dict: what ``load_tensors`` reads, which must map names to tensors."""
    weights = load_tensors(file, what)
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ConfigError(f"{file} is not a {what}: it holds no state dict of tensors")
    return weights


def _reason(err: BaseException) -> str:
    """The informative line of a loader error (torch wraps it in paragraphs of advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if line.startswith(("Unsupported", "PytorchStreamReader"))]
    return (specific or lines or ["the file ends early" if isinstance(err, EOFError) else type(err).__name__])[0][:200]
