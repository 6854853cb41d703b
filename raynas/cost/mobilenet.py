"""Analytic MACs and params of elastic MobileNet children, vectorised over architectures.

Mirrors ``raynas.supernet.mobilenet`` layer by layer: conv and linear MACs (what
``torch.utils.flop_counter`` counts, halved), and every parameter including BN affine ones.
"""

from __future__ import annotations

import numpy as np

from raynas.cost.columns import value_columns
from raynas.space import SearchSpace
from raynas.space.families.mobilenet import MobileNetSpec


def _conv_out(size: np.ndarray, stride: int) -> np.ndarray:
    return (size - 1) // stride + 1


def mobilenet_costs(
    space: SearchSpace, index_matrix: np.ndarray, num_classes: int, in_channels: int
) -> tuple[np.ndarray, np.ndarray]:
    """(MACs, params) for every row of an index matrix of ``space``."""
    spec: MobileNetSpec = space.spec  # type: ignore[assignment]
    column = value_columns(space, index_matrix)
    size = column("resolution")
    stem = column("stem_width")
    size = _conv_out(size, spec.stem.stride)
    macs = in_channels * stem * 9 * size**2
    params = in_channels * stem * 9 + 2 * stem
    width_in = stem
    for i, stage in enumerate(spec.stages):
        width = column(f"s{i}_width")
        depth = column(f"s{i}_depth")
        for j in range(stage.max_depth):
            active = depth > j
            stride = stage.stride if j == 0 else 1
            kernel, expand = column(f"s{i}_b{j}_kernel"), column(f"s{i}_b{j}_expand")
            out_size = _conv_out(size, stride)
            block_macs, block_params = 0, 0
            if stage.expand[-1] > 1:
                mid = width_in * expand
                block_macs = block_macs + width_in * mid * size**2
                block_params = block_params + width_in * mid + 2 * mid
            else:
                mid = width_in
            block_macs = block_macs + mid * kernel**2 * out_size**2 + mid * width * out_size**2
            block_params = block_params + mid * kernel**2 + 2 * mid + mid * width + 2 * width
            if stage.se:
                reduced = np.maximum(8, mid // 4)
                block_macs = block_macs + 2 * mid * reduced
                block_params = block_params + 2 * mid * reduced + reduced + mid
            if spec.stage_skip and j == 0:  # BigNAS stage shortcut: a BN-free 1x1 conv where widths differ
                projects = width_in != width
                block_macs = block_macs + np.where(projects, width_in * width * out_size**2, 0)
                block_params = block_params + np.where(projects, width_in * width, 0)
            macs = macs + np.where(active, block_macs, 0)
            params = params + np.where(active, block_params, 0)
            if j == 0:
                size = out_size
            width_in = width
    head = column("head_width")
    macs = macs + width_in * head * size**2
    params = params + width_in * head + 2 * head
    features = head
    if spec.head.mix_width is not None:
        macs = macs + head * spec.head.mix_width
        params = params + head * spec.head.mix_width
        features = np.full_like(head, spec.head.mix_width)
    macs = macs + features * num_classes
    params = params + features * num_classes + num_classes
    return macs, params



