"""Export children as shippable folders: weights, arch.json, metrics.json, TorchScript and torch.export programs.

SOURCE is a supernet checkpoint (with --arch KEY, or --top-k K --from RUN_DIR), a retrained
child's checkpoint or run folder (``raynas retrain --out``), or a child folder (written again).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from raynas.cli.common import positive_int
from raynas.cli.estimate_common import checkpoint_data
from raynas.data import load_data
from raynas.deploy import export_calibrated, export_top_k, reship, resolve_source, ship_retrained
from raynas.errors import ConfigError
from raynas.estimate.calibration import CalibrationConfig
from raynas.logs import get_logger
from raynas.model_record import DataInfo
from raynas.results.report import read_run_metadata
from raynas.supernet import read_child_record
from raynas.train import load_checkpoint

SOURCE_KINDS = {"child": "a child folder", "retrained": "a retrained child's checkpoint"}
LOAD_HINT = "load with raynas.supernet.load_child, or torch.jit.load(model.ts) without raynas"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, nargs="?", metavar="SOURCE",
                        help="supernet checkpoint, retrain output or child folder; default with --from: "
                             "the run's checkpoint")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--arch", help="the child's canonical key")
    choice.add_argument("--top-k", type=int, help="export the K most accurate calibrated children of --from")
    parser.add_argument("--from", dest="results", type=Path, help="search run folder (or Parquet file) for --top-k")
    parser.add_argument("--data", default=None, help="DATA for BN calibration; default: the checkpoint's dataset. "
                                                     "For an older child folder: the dataset it was trained on")
    parser.add_argument("--calib-images", type=positive_int, default=2000)
    parser.add_argument("--out", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    if (args.top_k is None) != (args.results is None):
        raise ConfigError(f"--top-k and --from go together, got --top-k {args.top_k} and --from {args.results}")
    source = args.checkpoint or _run_checkpoint(args.results)
    kind, folder = resolve_source(source)
    if kind == "supernet":
        return _from_supernet(args, folder)
    if args.top_k is not None or args.arch is not None:
        flag = "--top-k" if args.top_k is not None else "--arch"
        raise ConfigError(f"{flag} chooses children of a supernet checkpoint, but SOURCE {folder} is "
                          f"{SOURCE_KINDS[kind]}, a single child; drop {flag}")
    out = reship(folder, args.out, _data_info(args.data)) if kind == "child" else ship_retrained(folder, args.out)
    record = read_child_record(out)
    print(f"exported {record.arch} from {SOURCE_KINDS[kind]} -> {out} ({LOAD_HINT})")
    return 0


def _from_supernet(args: argparse.Namespace, folder: Path) -> int:
    if args.arch is None and args.top_k is None:
        raise ConfigError(f"{folder} is a supernet checkpoint: choose its child with --arch KEY, "
                          f"or --top-k K --from RUN_DIR")
    checkpoint = load_checkpoint(folder)
    calibration = CalibrationConfig(images=args.calib_images, seed=checkpoint.config.seed)
    get_logger(__name__).info(f"calibrating BN on {args.calib_images} images before export "
                              f"({args.top_k or 1} child(ren) of {checkpoint.checkpoint_id})")
    if args.top_k is not None:
        folders = export_top_k(checkpoint, args.results, args.top_k, args.out, args.data, calibration)
        for rank, out in enumerate(folders, start=1):
            metrics = read_child_record(out).metrics
            print(f"{rank}. {metrics['arch']}: top-1 {metrics['accuracy']:.4f} -> {out}")
        print(f"exported {len(folders)} of the top {args.top_k} calibrated children ({LOAD_HINT})")
        return 0
    arch = checkpoint.space.arch(args.arch)
    record = export_calibrated(checkpoint, arch, checkpoint_data(checkpoint, args.data), args.out, calibration)
    print(f"exported {record['arch']}: top-1 {record['accuracy']:.4f} after calibrating on "
          f"{record['calib_images']} images -> {args.out} ({LOAD_HINT})")
    return 0


def _data_info(spec: str | None) -> DataInfo | None:
    """What ``--data`` describes (classes, channels, normalisation); None without the flag."""
    return None if spec is None else DataInfo.of(load_data(spec))


def _run_checkpoint(results: Path | None) -> Path:
    if results is None:
        raise ConfigError("export needs a SOURCE (checkpoint, retrain output or child folder), got none")
    checkpoint = read_run_metadata(results).get("checkpoint")
    if not checkpoint:
        raise ConfigError(f"{results}/run.json must name the run's checkpoint when SOURCE is omitted; "
                          f"pass the checkpoint as SOURCE")
    return Path(checkpoint)
