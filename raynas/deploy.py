"""Getting a chosen child out: BN-calibrate it (BigNAS deploys without retraining), then save it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from raynas.data import DataSplits
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.space import Arch
from raynas.supernet import save_child
from raynas.train import LoadedCheckpoint


def export_calibrated(
    checkpoint: LoadedCheckpoint, arch: Arch, data: DataSplits, out_dir: str | os.PathLike[str],
    calibration: CalibrationConfig = CalibrationConfig(),
) -> dict:
    """Calibrate ``arch``'s BN statistics, write weights.pt + arch.json, and return its metrics.

    The metrics (top-1, top-5, loss on the validation split, calibration images) are saved
    beside the weights as metrics.json.
    """
    supernet = checkpoint.supernet
    metrics = calibrate_and_evaluate(supernet, arch, data.calib, data.val, data.mean, data.std, calibration)
    out = save_child(supernet, arch, out_dir)
    record = {"arch": checkpoint.space.key(arch), "checkpoint_id": checkpoint.checkpoint_id,
              "mean": list(data.mean), "std": list(data.std), **metrics}
    (Path(out) / "metrics.json").write_text(json.dumps(record, indent=2))
    return record
