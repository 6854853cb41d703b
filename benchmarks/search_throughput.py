"""Search throughput: evaluations/s on the evaluator pool, against raw compute and Ray Tune trials.

For each number of actors (1 and 2; 1, 2 and 4 when Ray sees a GPU) it times:

    score            pool.score over many children (BN indicator, a table lookup)
    search(bn)       study.search with bn_score,flops: Optuna ask/tell + pool + Parquet
    tune(bn)         tune_search with bn_score,flops: one Ray Tune trial per child
    calibrate        pool.calibrate_and_evaluate (BN calibration + validation accuracy)
    tune(calibrate)  tune_search with accuracy,flops: one Ray Tune trial per child

"raw" is the same evaluations of the same children in this process, without Ray, one thread
(``BNIndicator.score`` in the mode's batches, ``calibrate_and_evaluate`` per child);
"x raw" is seconds / raw seconds, and "overhead ms" is (seconds - raw / actors) per evaluation:
what the engine adds beyond ideal parallel compute. "steady/s" is the rate between the first and
the last finished row, without start-up (Tune's trial actors, the first batch).

    .venv/bin/python benchmarks/search_throughput.py                          # mbv3_cifar, CIFAR-10
    .venv/bin/python benchmarks/search_throughput.py --space tiny --data digits   # quick

The default trains mbv3_cifar briefly on CIFAR-10 (imagefolder, extracted from
../shared/data/cifar10-jpeg.tar when missing); --checkpoint reuses a trained one. Writes
benchmarks/out/search_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
import torch

from raynas.data import DataSplits, ImageSet, load_data
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.ray_env import ensure_ray
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.study import SearchConfig, search
from raynas.search.tune_adapter import tune_search
from raynas.space import Arch, load_space
from raynas.train import LoadedCheckpoint, TrainConfig, load_checkpoint, train_supernet

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
CIFAR_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar"
CIFAR_DIR = Path.home() / ".cache" / "raynas" / "cifar10-jpeg"
POOL_CPUS = 0.9  # leaves room for the tiny Tune trials beside the actors


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="mbv3_cifar")
    p.add_argument("--data", default=f"imagefolder:{CIFAR_DIR}")
    p.add_argument("--checkpoint", type=Path, help="a trained checkpoint folder (skips training)")
    p.add_argument("--train-images", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--calib-images", type=int, default=256, help="BN calibration images per child")
    p.add_argument("--val-images", type=int, default=500, help="validation images per child")
    p.add_argument("--score-archs", type=int, default=20_000, help="children for the pool.score mode")
    p.add_argument("--search-trials", type=int, default=300, help="trials of the ask/tell BN-score search")
    p.add_argument("--tune-trials", type=int, default=30, help="Tune trials of the BN-score Tune search")
    p.add_argument("--calib-archs", type=int, default=6, help="children calibrated per calibrate mode")
    p.add_argument("--actors", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="comma-separated actor counts (default 1,2; 1,2,4 with a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT / "search_throughput.json")
    return p.parse_args(argv)


# --- setup -------------------------------------------------------------------------------
def data_spec(spec: str) -> str:
    kind, _, root = spec.partition(":")
    if kind != "imagefolder":
        return spec
    folder = Path(root).expanduser()
    if not (folder / "train").is_dir() and folder == CIFAR_DIR and CIFAR_TAR.is_file():
        print(f"extracting {CIFAR_TAR} into {folder}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(CIFAR_TAR) as tar:
            tar.extractall(folder, filter="data")
    return f"imagefolder:{folder}"


def trained_checkpoint(args: argparse.Namespace, splits: DataSplits) -> tuple[LoadedCheckpoint, float]:
    if args.checkpoint:
        return load_checkpoint(args.checkpoint), 0.0
    started = time.perf_counter()
    config = TrainConfig(epochs=args.epochs, train_images=args.train_images, seed=args.seed, log_every_epoch=False)
    name = f"throughput-{args.space}-{uuid.uuid4().hex[:6]}"
    result = train_supernet(load_space(args.space), splits, config, out_dir=OUT / "train", name=name)
    return load_checkpoint(result.checkpoint), time.perf_counter() - started


# --- measuring -----------------------------------------------------------------------------
class Raw:
    """The same evaluations in this process, one thread, no Ray; calibrations cached per child."""

    def __init__(self, checkpoint: LoadedCheckpoint, splits: DataSplits, calibration: CalibrationConfig,
                 device: str = "cpu") -> None:
        self.checkpoint, self.calibration = checkpoint, calibration
        self.supernet = checkpoint.supernet.to(device)
        self.calib, self.val = (ImageSet(s.images.to(device), s.labels.to(device)) for s in (splits.calib, splits.val))
        self.indicator = BNIndicator().fit(checkpoint.supernet)
        self.calibrated: dict[str, float] = {}

    def score(self, archs: Sequence[Arch], batch_size: int) -> float:
        started = time.perf_counter()
        for i in range(0, len(archs), batch_size):
            self.indicator.score(list(archs[i:i + batch_size]))
        return time.perf_counter() - started

    def calibrate(self, archs: Sequence[Arch]) -> float:
        space, info = self.checkpoint.space, self.checkpoint.data
        for arch in archs:
            key = space.key(arch)
            if key not in self.calibrated:
                started = time.perf_counter()
                calibrate_and_evaluate(self.supernet, arch, self.calib, self.val, info.mean, info.std, self.calibration)
                self.calibrated[key] = time.perf_counter() - started
        return sum(self.calibrated[space.key(a)] for a in archs)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def row(mode: str, actors: int, n: int, seconds: float, raw: float, table: Any = None) -> dict[str, Any]:
    steady = None
    if table is not None and len(table) > 2:
        finished = table["finished_at"].sort_values().to_numpy()
        steady = (len(finished) - 1) / max(finished[-1] - finished[0], 1e-9)
    return {"mode": mode, "actors": actors, "evaluations": n, "seconds": seconds, "evals_per_s": n / seconds,
            "steady_evals_per_s": steady, "raw_seconds": raw, "x_raw": seconds / max(raw, 1e-9),
            "overhead_ms_per_eval": 1000 * (seconds - raw / actors) / n}


def measure(checkpoint: LoadedCheckpoint, splits: DataSplits, raw: Raw, actors: int, gpus: float,
            args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    space = checkpoint.space
    config = PoolConfig(num_actors=actors, num_cpus=POOL_CPUS, num_gpus=gpus / actors if gpus else 0.0,
                        calibration=raw.calibration)
    rows = []
    with EvaluatorPool(checkpoint, splits, config) as pool:
        pool.score([space.min()] * actors, batch_size=1)  # actors up and weights loaded, untimed
        archs = space.from_index_matrix(space.sample_index_matrix(args.score_archs, seed=args.seed))
        _, seconds = timed(lambda: pool.score(archs))
        rows.append(row("score", actors, len(archs), seconds, raw.score(archs, 4096)))

        cfg = SearchConfig(objectives=("bn_score", "flops"), trials=args.search_trials, batch_size=100, top_k=0,
                           seed=args.seed, run_id=f"search-{actors}")
        result, seconds = timed(lambda: search(checkpoint, pool, work / f"search-{actors}", cfg, progress=False))
        table = result.store.to_pandas()
        rows.append(row("search(bn)", actors, len(table), seconds,
                        raw.score([space.arch(k) for k in table.sort_values("trial")["arch"]], 100), table))

        cfg = SearchConfig(objectives=("bn_score", "flops"), trials=args.tune_trials, seed=args.seed,
                           run_id=f"tune-bn-{actors}")
        result, seconds = timed(lambda: tune_search(checkpoint, pool, work / f"tune-bn-{actors}", cfg))
        table = result.store.to_pandas()
        rows.append(row("tune(bn)", actors, len(table), seconds,
                        raw.score([space.arch(k) for k in table["arch"]], 1), table))

        calib = space.from_index_matrix(space.sample_index_matrix(args.calib_archs, seed=args.seed + 1))
        _, seconds = timed(lambda: pool.calibrate_and_evaluate(calib, batch_size=1))
        rows.append(row("calibrate", actors, len(calib), seconds, raw.calibrate(calib)))

        cfg = SearchConfig(objectives=("accuracy", "flops"), trials=args.calib_archs, seed=args.seed,
                           run_id=f"tune-cal-{actors}")
        result, seconds = timed(lambda: tune_search(checkpoint, pool, work / f"tune-cal-{actors}", cfg))
        table = result.store.to_pandas()
        rows.append(row("tune(calibrate)", actors, len(table), seconds,
                        raw.calibrate([space.arch(k) for k in table["arch"]]), table))
    for r in rows[-5:]:
        print(format_row(r), flush=True)
    return rows


# --- output --------------------------------------------------------------------------------
HEADER = f"{'mode':<16} {'actors':>6} {'evals':>6} {'seconds':>8} {'evals/s':>9} {'steady/s':>9} {'raw s':>8} {'x raw':>8} {'overhead ms':>12}"


def format_row(r: dict[str, Any]) -> str:
    steady = f"{r['steady_evals_per_s']:9.1f}" if r["steady_evals_per_s"] is not None else f"{'-':>9}"
    return (f"{r['mode']:<16} {r['actors']:>6} {r['evaluations']:>6} {r['seconds']:8.2f} {r['evals_per_s']:9.1f} "
            f"{steady} {r['raw_seconds']:8.3f} {r['x_raw']:8.1f} {r['overhead_ms_per_eval']:12.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()
    ensure_ray(num_cpus=os.cpu_count())
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    counts = args.actors or ([1, 2, 4] if gpus else [1, 2])
    spec = data_spec(args.data)
    splits = load_data(spec, seed=args.seed, calib_images=args.calib_images, max_train_images=args.train_images,
                       max_val_images=args.val_images)
    checkpoint, train_seconds = trained_checkpoint(args, splits)
    print(f"checkpoint {checkpoint.path} ({checkpoint.space.name}, trained in {train_seconds:.0f}s); "
          f"{len(splits.calib)} calibration and {len(splits.val)} validation images; actors {counts}", flush=True)
    torch.set_num_threads(1)  # raw compute on one core, as each actor has (OMP_NUM_THREADS=1)
    calibration = CalibrationConfig(images=args.calib_images, eval_batch_size=500, seed=args.seed)
    raw = Raw(checkpoint, splits, calibration, device="cuda" if gpus else "cpu")
    print(HEADER, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="raynas-throughput-") as tmp:
        for actors in counts:
            rows.extend(measure(checkpoint, splits, raw, actors, gpus, args, Path(tmp)))
    print("\n" + HEADER + "\n" + "\n".join(format_row(r) for r in rows))
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "args": {k: str(v) for k, v in vars(args).items()},
              "space": checkpoint.space.name, "data": spec, "checkpoint": str(checkpoint.path),
              "train_seconds": train_seconds, "cpus": os.cpu_count(), "gpus": gpus,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "total_seconds": time.perf_counter() - started, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['total_seconds']:.0f}s in all)")


if __name__ == "__main__":
    main()
