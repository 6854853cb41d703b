"""Which torch device a measurement or a calibration runs on, refused clearly where it is absent."""

from __future__ import annotations

import torch

from raynas.errors import ConfigError


def resolve_device(device: str | torch.device) -> torch.device:
    """A ``torch.device`` for "cpu" or "cuda[:i]"; a GPU that is not there is a clear error."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device must be 'cpu' or 'cuda[:index]', got {device!r}") from err
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu' or 'cuda[:index]', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was asked for, but torch.cuda.is_available() is False; use 'cpu' "
            "or run on a machine with a GPU"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} was asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return dev
