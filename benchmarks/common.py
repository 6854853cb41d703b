"""Shared helpers for the benchmarks: data location, result tables and JSON output."""

from __future__ import annotations

import json
import os
import platform
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
SHARED_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar"
CIFAR_DIR = Path(os.environ.get("RAYNAS_CIFAR_DIR", Path.home() / ".cache" / "raynas" / "cifar10-jpeg"))


def cifar_spec() -> str:
    """``imagefolder:`` spec of the CIFAR-10 JPEG tree, extracted once from ../shared/data."""
    if not (CIFAR_DIR / "train").is_dir():
        if not SHARED_TAR.is_file():
            raise SystemExit(f"CIFAR-10 not found: extract {SHARED_TAR} into {CIFAR_DIR}")
        CIFAR_DIR.mkdir(parents=True, exist_ok=True)
        with tarfile.open(SHARED_TAR) as tar:
            tar.extractall(CIFAR_DIR, filter="data")
    return f"imagefolder:{CIFAR_DIR}"


def machine() -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A fixed-width text table."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"written_at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **payload},
                               indent=2, default=str))
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return "" if value is None else str(value)
