"""Save an exported child as weights plus an architecture JSON, and load it back.

The JSON embeds the space definition, so a child loads without the original space file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raynas.space import Arch, SearchSpace, space_from_dict
from raynas.supernet.base import Supernet
from raynas.supernet.registry import build_supernet

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "weights.pt"


def child_record(space: SearchSpace, arch: Arch, supernet: Supernet) -> dict[str, Any]:
    return {
        "format": "raynas-child/1",
        "space": space.definition or {"name": space.name, "family": space.family},
        "space_name": space.name,
        "arch": space.key(arch),
        "dims": arch.to_dict(),
        "resolution": space.resolution(arch),
        "num_classes": supernet.num_classes,
        "in_channels": supernet.in_channels,
        "bn_layout": getattr(supernet, "bn_layout", "private"),
    }


def save_child(supernet: Supernet, arch: Arch, out_dir: str | os.PathLike[str]) -> Path:
    """Export ``arch`` from ``supernet`` and write ``arch.json`` and ``weights.pt`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    child = supernet.export(arch)
    torch.save(child.state_dict(), out / WEIGHTS_FILE)
    record = child_record(supernet.space, arch, supernet)
    tmp = out / (ARCH_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out / ARCH_FILE)
    return out


def load_child(path: str | os.PathLike[str]) -> tuple[nn.Module, Arch, SearchSpace]:
    """Rebuild a saved child in eval mode; returns (module, arch, space)."""
    folder = Path(path)
    record = json.loads((folder / ARCH_FILE).read_text())
    space = space_from_dict(record["space"], source=str(folder / ARCH_FILE), default_name=record["space_name"])
    arch = space.arch(record["dims"])
    skeleton = build_supernet(space, record["num_classes"], record["in_channels"], bn_layout=record["bn_layout"])
    child = skeleton.export(arch)
    child.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return child.eval(), arch, space
