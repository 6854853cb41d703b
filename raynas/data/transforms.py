"""Batch transforms on uint8 tensors: normalise, resize to a child's resolution, augment, cut out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_model_input(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], resolution: int
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float at ``resolution`` x ``resolution`` (bilinear)."""
    x = images.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    x = (x - m) / s
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return x


def augment(images: torch.Tensor, generator: torch.Generator, hflip: bool = True, pad: int | None = None) -> torch.Tensor:
    """Random crop with zero padding (an eighth of the side: 4 px on CIFAR) and, where the data
    allows it, a random horizontal flip. Digits must not be flipped: a mirrored 3 is no 3."""
    n, _, h, w = images.shape
    pad = max(1, h // 8) if pad is None else pad
    out = images
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    if pad == 0:
        return out
    padded = F.pad(out, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(-1, 1) + torch.arange(h).view(1, -1)).view(n, 1, h, 1).expand(n, images.shape[1], h, w)
    cols = (dx.view(-1, 1) + torch.arange(w).view(1, -1)).view(n, 1, 1, w).expand(n, images.shape[1], h, w)
    batch = torch.arange(n).view(n, 1, 1, 1)
    channel = torch.arange(images.shape[1]).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]


def cutout(images: torch.Tensor, generator: torch.Generator, size: int, fill: Sequence[int]) -> torch.Tensor:
    """Cutout (DeVries and Taylor, 2017): one ``size`` x ``size`` square per image, centred on a
    random pixel and clipped at the border, set to ``fill`` (per channel).

    The paper zeroes the square after normalisation, that is, sets it to the data's mean; on
    uint8 images that is ``fill`` = the mean in 0..255, which normalises to 0.
    """
    n, c, h, w = images.shape
    cy = torch.randint(0, h, (n, 1), generator=generator)
    cx = torch.randint(0, w, (n, 1), generator=generator)
    top, left = cy - size // 2, cx - size // 2
    rows, cols = torch.arange(h).view(1, -1), torch.arange(w).view(1, -1)
    in_rows = (rows >= top) & (rows < top + size)
    in_cols = (cols >= left) & (cols < left + size)
    square = (in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w)).to(images.device)
    value = torch.tensor(list(fill), dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    return torch.where(square, value, images)
