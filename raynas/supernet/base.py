"""The interface every supernet family implements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from raynas.space import Arch, SearchSpace


class Supernet(nn.Module):
    """A weight-sharing network over a ``SearchSpace``.

    The active child is an explicit argument, ``supernet(x, arch)``, or a scoped context,
    ``with supernet.activated(arch): supernet(x)``. The context restores the largest child on
    exit, even on error, so no other caller ever sees a half-applied architecture.
    """

    bn_layout: str = "private"
    """How children share BN layers; a family that offers other layouts sets it in ``__init__``."""

    def __init__(self, space: SearchSpace, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes
        self.in_channels = in_channels
        self._active: Arch | None = None

    @contextlib.contextmanager
    def activated(self, arch: Arch) -> Iterator["Supernet"]:
        if self._active is not None and self._active != arch:
            raise RuntimeError("a different child is already active on this supernet; nested activation is not allowed")
        outer = self._active
        self._apply_arch(arch)
        self._active = arch
        try:
            yield self
        finally:
            self._active = outer
            if outer is None:
                self._reset_arch()

    def forward(self, x: torch.Tensor, arch: Arch | None = None) -> torch.Tensor:
        if arch is not None:
            with self.activated(arch):
                return self._forward(x, arch)
        if self._active is None:
            raise RuntimeError("no active child: call supernet(x, arch) or use `with supernet.activated(arch)`")
        return self._forward(x, self._active)

    def export(self, arch: Arch) -> nn.Module:
        """A plain ``nn.Module`` with this child's weights and BN state, and no elastic code."""
        with self.activated(arch):
            child = self._export(arch)
        child.train(self.training)
        return child

    # --- implemented by each family -----------------------------------------------------
    def _apply_arch(self, arch: Arch) -> None:
        raise NotImplementedError

    def _reset_arch(self) -> None:
        raise NotImplementedError

    def _forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        raise NotImplementedError

    def _export(self, arch: Arch) -> nn.Module:
        raise NotImplementedError
