"""The GPU check: training, BN-score, calibration and latency-table speed on one device, in one run.

    bash benchmarks/gpu_check.sh --device cuda                # on the GPU machine, about 3 minutes
    .venv/bin/python -m benchmarks.gpu_check --device cpu --quick      # anywhere, in seconds

Written for the day a GPU is lent (``gpu_check.sh`` holds the exact device call), and run
end to end on the CPU with ``--quick`` so the script is known to work before that day. Four
sections, each printed as a table as soon as it is done:

- ``train``: images/s of the pure ``sandwich_step`` (largest, smallest and two random children
  per step) on synthetic 32x32 images, one process, no Ray Train, for every mode
  (bn_only, full) x amp (off, bf16) x channels_last (off, on). The supernet, trainable
  parameters and optimiser are set up as ``raynas.train.modes`` does, and the model is put in
  the memory format as the training loop puts it. ``TrainConfig.amp``/``channels_last`` carry
  the precision into the step (an older ``TrainConfig`` without them gets an autocast around
  the step instead; the row's ``config_fields`` says which ran).
- ``bn_score``: ``BNIndicator.fit`` seconds on the supernet on the device, and archs/s of
  ``score`` over an index matrix (numpy, device-free), with a check against ``score_direct``.
- ``calibration``: children/s and calibration images/s of ``calibrate_and_evaluate`` on the
  device, with the image sets on the device as the evaluator actors keep them.
- ``latency``: build seconds of ``measure_latency_table`` on the device, float32 and
  bf16 + channels-last.

The JSON (``benchmarks/common.write_json``) is rewritten after every section, so a run cut
short still leaves what it measured: ``benchmarks/out/gpu_check.json`` for the full CUDA run,
``gpu_check_<device>[_quick].json`` otherwise, and a copy in ``--out`` (default: $OUT when
set, the device tool's folder that comes back).

Ray is never imported: its wheel (79 MB) cannot travel to the GPU machine (64 MiB a call),
and the pieces measured here need none of it. ``raynas.train``'s ``__init__`` imports the Ray
Train loop, so the sandwich step and modes are imported from the package folder without it
(``_train_modules``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from benchmarks.common import ROOT, table, write_json
from raynas.data import ImageSet, to_model_input
from raynas.estimate import BNIndicator, score_direct
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.estimate.latency import measure_latency_table, num_threads, resolve_device
from raynas.space import SearchSpace, load_space
from raynas.supernet import Supernet, build_supernet

T = TypeVar("T")
NUM_CLASSES = 10
IMAGE_SIZE = 32
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run: ``FULL`` fits a few minutes of an H200, ``QUICK`` seconds of a CPU."""

    batch_size: int
    warmup_steps: int
    steps: int
    score_archs: int
    fit_repeats: int
    calib_children: int
    calib_images: int
    calib_batch: int
    val_images: int
    latency_repeats: int
    latency_warmup: int
    latency_rounds: int
    latency_all_resolutions: bool


FULL = Sizes(batch_size=256, warmup_steps=3, steps=20, score_archs=1_000_000, fit_repeats=5, calib_children=16,
             calib_images=2000, calib_batch=256, val_images=1000, latency_repeats=40, latency_warmup=2,
             latency_rounds=8, latency_all_resolutions=True)
QUICK = Sizes(batch_size=8, warmup_steps=1, steps=1, score_archs=10_000, fit_repeats=1, calib_children=2,
              calib_images=32, calib_batch=16, val_images=16, latency_repeats=2, latency_warmup=0,
              latency_rounds=1, latency_all_resolutions=False)
LATENCY_VARIANTS = (("off", False), ("bf16", True))


# --- imports without Ray ----------------------------------------------------------------------
def _train_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """``raynas.train.config``, ``.modes`` and ``.sandwich``, without running ``raynas/train/__init__``
    (it imports Ray Train, which the GPU machine lacks) unless the package is already imported."""
    if "raynas.train" not in sys.modules:
        package = types.ModuleType("raynas.train", "raynas.train without its Ray Train entry points")
        package.__path__ = [str(ROOT / "raynas" / "train")]
        sys.modules["raynas.train"] = package
    return tuple(importlib.import_module(f"raynas.train.{name}") for name in ("config", "modes", "sandwich"))


# --- helpers ----------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Seconds of ``fn()`` with the device's queue drained before and after, and its result."""
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def _synthetic(n: int, device: torch.device, seed: int) -> ImageSet:
    """``n`` seeded random uint8 images (3 x 32 x 32) with labels, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    return ImageSet(images.to(device), labels.to(device))


def _supernet(space: SearchSpace, device: torch.device, bn_layout: str = "private") -> Supernet:
    return build_supernet(space, NUM_CLASSES, 3, seed=0, bn_layout=bn_layout).to(device)


# --- sections ---------------------------------------------------------------------------------
def train_row(space: SearchSpace, device: torch.device, mode: str, amp: str, channels_last: bool,
              sizes: Sizes) -> dict[str, Any]:
    """Images/s of ``sandwich_step`` for one (mode, amp, channels_last)."""
    config_module, modes, sandwich = _train_modules()
    fields = {f.name for f in dataclasses.fields(config_module.TrainConfig)}
    extra = {k: v for k, v in {"amp": amp, "channels_last": channels_last}.items() if k in fields}
    config = config_module.TrainConfig(mode=mode, batch_size=sizes.batch_size, log_every_epoch=False, **extra)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = _supernet(space, device, config.bn_layout).train().to(memory_format=memory_format)
    trainable = modes.configure_trainable(model, config)
    optimizer = modes.make_optimizer(model, config)
    data = _synthetic(sizes.batch_size, device, seed=1)

    outer_autocast = amp == "bf16" and "amp" not in extra  # a TrainConfig with ``amp`` autocasts in the step

    def to_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
        return to_model_input(images, MEAN, STD, resolution).contiguous(memory_format=memory_format)

    def steps(first: int, count: int) -> None:
        for t in range(first, first + count):
            members = sandwich.sandwich_members(space, config.seed, t, config.num_random, config.sampling)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=outer_autocast):
                sandwich.sandwich_step(model, members, [(data.images, data.labels)], to_input, optimizer, config, t,
                                       space.key)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps(0, sizes.warmup_steps)
    seconds, _ = _timed(lambda: steps(sizes.warmup_steps, sizes.steps), device)
    members = 2 + config.num_random if config.sampling == "sandwich" else config.num_random
    images = sizes.batch_size * sizes.steps
    return {"mode": mode, "amp": amp, "channels_last": channels_last, "batch": sizes.batch_size,
            "steps": sizes.steps, "step_ms": 1000 * seconds / sizes.steps, "images_per_s": images / seconds,
            "child_images_per_s": members * images / seconds,
            "trainable_params": sum(p.numel() for p in trainable),
            "peak_MB": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "config_fields": sorted(extra)}


def train_section(space: SearchSpace, device: torch.device, sizes: Sizes, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per mode x amp x channels_last; each bn_only row also gets its speed-up over full."""
    grid = [(amp, layout == "on") for amp in args.amp for layout in args.channels_last]
    rows = [train_row(space, device, mode, amp, cl, sizes) for amp, cl in grid for mode in ("bn_only", "full")]
    for bn_only, full in zip(rows[::2], rows[1::2]):
        bn_only["vs_full"] = bn_only["images_per_s"] / full["images_per_s"]
    return rows


def bn_score_section(space: SearchSpace, device: torch.device, sizes: Sizes, args: argparse.Namespace) -> dict[str, Any]:
    """Fit on the device's supernet (gammas copied to the host), then score an index matrix."""
    model = _supernet(space, device)
    fits = [_timed(lambda: BNIndicator().fit(model), device)[0] for _ in range(sizes.fit_repeats)]
    indicator = BNIndicator().fit(model)
    matrix = space.sample_index_matrix(sizes.score_archs, seed=0)
    score_seconds, scores = _timed(lambda: indicator.score(matrix), device)
    probes = space.from_index_matrix(matrix[:8])
    direct = np.array([score_direct(model, arch) for arch in probes])
    return {"device": str(device), "fit_s": statistics.median(fits), "archs": len(matrix), "score_s": score_seconds,
            "archs_per_s": len(matrix) / score_seconds,
            "direct_max_abs_diff": float(np.max(np.abs(direct - scores[: len(probes)])))}


def calibration_section(space: SearchSpace, device: torch.device, sizes: Sizes,
                        args: argparse.Namespace) -> dict[str, Any]:
    """BN calibration + evaluation of seeded children, one untimed first (it pays for cuDNN's set-up)."""
    model = _supernet(space, device)
    calib, val = _synthetic(sizes.calib_images, device, seed=2), _synthetic(sizes.val_images, device, seed=3)
    config = CalibrationConfig(images=sizes.calib_images, batch_size=sizes.calib_batch,
                               eval_batch_size=sizes.calib_batch)
    first, *archs = space.from_index_matrix(space.sample_index_matrix(sizes.calib_children + 1, seed=1))
    calibrate_and_evaluate(model, first, calib, val, MEAN, STD, config, device)
    seconds, results = _timed(
        lambda: [calibrate_and_evaluate(model, arch, calib, val, MEAN, STD, config, device) for arch in archs], device)
    calib_seconds = sum(r["calib_seconds"] for r in results)
    return {"device": str(device), "children": len(results), "calib_images": config.images,
            "val_images": len(val), "seconds": seconds, "children_per_s": len(results) / seconds,
            "calib_images_per_s": len(results) * config.images / calib_seconds,
            "calib_share": calib_seconds / seconds}


def latency_section(space: SearchSpace, device: torch.device, sizes: Sizes, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build the table once per precision variant, and predict the smallest child."""
    resolutions = None if sizes.latency_all_resolutions else [space.resolution(space.min())]
    rows = []
    for amp, channels_last in LATENCY_VARIANTS:
        seconds, lut = _timed(lambda: measure_latency_table(
            space, device, repeats=sizes.latency_repeats, warmup=sizes.latency_warmup, rounds=sizes.latency_rounds,
            resolutions=resolutions, amp=amp, channels_last=channels_last), device)
        rows.append({"device_key": lut.device_key, "amp": amp, "channels_last": channels_last,
                     "entries": len(lut.entries), "build_s": seconds, "entries_per_s": len(lut.entries) / seconds,
                     "min_child_ms": float(lut.predict(space, [space.min()])[0])})
    return rows


SECTIONS: dict[str, tuple[Callable[[SearchSpace, torch.device, Sizes, argparse.Namespace], Any], list[str]]] = {
    "train": (train_section, ["mode", "amp", "channels_last", "batch", "step_ms", "images_per_s",
                              "child_images_per_s", "vs_full", "trainable_params", "peak_MB"]),
    "bn_score": (bn_score_section, ["device", "fit_s", "archs", "score_s", "archs_per_s", "direct_max_abs_diff"]),
    "calibration": (calibration_section, ["device", "children", "calib_images", "val_images", "seconds",
                                          "children_per_s", "calib_images_per_s", "calib_share"]),
    "latency": (latency_section, ["device_key", "entries", "build_s", "entries_per_s", "min_child_ms"]),
}
"""Each section: the function that measures it, and the columns of its printed table."""


# --- the run ----------------------------------------------------------------------------------
def _save(name: str, payload: dict[str, Any], out_dir: Path | None) -> Path:
    """``write_json``, then a copy into ``out_dir`` (the device tool's $OUT, which comes back)."""
    path = write_json(name, payload)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out_dir / path.name)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cpu, cuda or cuda:INDEX")
    parser.add_argument("--quick", action="store_true", help="tiny problem sizes: proves the script, measures nothing")
    parser.add_argument("--space", default="mbv3_cifar")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--amp", nargs="+", choices=["off", "bf16"], default=["off", "bf16"], help="training")
    parser.add_argument("--channels-last", nargs="+", choices=["off", "on"], default=["off", "on"], help="training")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is steadiest on a shared machine); default: torch's setting")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None,
                        help="also copy the JSON here; default: $OUT when set")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    sizes = QUICK if args.quick else FULL
    space = load_space(args.space)
    name = "gpu_check" if device.type == "cuda" and not args.quick else f"gpu_check_{device.type}{'_quick' * args.quick}"
    payload: dict[str, Any] = {
        "device": str(device), "quick": args.quick, "space": space.name, "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "threads": args.threads or torch.get_num_threads(), "sizes": dataclasses.asdict(sizes), "seconds": {},
    }
    for section in args.sections:
        measure, columns = SECTIONS[section]
        with num_threads(args.threads):
            seconds, result = _timed(lambda: measure(space, device, sizes, args), device)
        payload[section], payload["seconds"][section] = result, round(seconds, 2)
        print(f"\n{section}: {space.name} on {device}, {seconds:.1f} s")
        print(table(result if isinstance(result, list) else [result], columns), flush=True)
        path = _save(name, payload, args.out)
    print(f"\nwrote {path}" + (f" and {args.out / path.name}" if args.out is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
