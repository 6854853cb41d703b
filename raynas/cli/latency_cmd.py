"""Measure a per-block latency table of a space on this machine (CPU, or GPU with --device cuda)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from raynas.cli.common import non_negative_int, positive_int
from raynas.estimate.latency import (
    AMP_MODES,
    DEFAULT_REPEATS,
    DEFAULT_ROUNDS,
    DEFAULT_WARMUP,
    LatencyTable,
    MissingLatencyEntryError,
    measure_latency_table,
    num_threads,
)
from raynas.logs import Progress, get_logger
from raynas.space import SearchSpace, load_space


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="a shipped space name (tiny, mbv3_cifar, nb201, ...) or a .yaml path")
    parser.add_argument("--out", type=Path, required=True, help="the table file to write (JSON)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--device", default="cpu", help="torch device to measure on: cpu, cuda or cuda:INDEX")
    where.add_argument("--gpu", dest="device", action="store_const", const="cuda", help="the same as --device cuda")
    parser.add_argument("--amp", choices=AMP_MODES, default="off",
                        help="bf16: time every call under torch.autocast (part of the device key)")
    parser.add_argument("--channels-last", action="store_true",
                        help="time probes and inputs in the channels-last memory format (part of the device key)")
    parser.add_argument("--resolution", type=positive_int, nargs="+", action="extend", default=None, metavar="R",
                        help="measure only these input resolutions (keeps large spaces cheap); default: all")
    parser.add_argument("--batch-size", type=positive_int, default=1)
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads while measuring (part of the device key); default: torch's setting")
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS, help="timed calls per entry")
    parser.add_argument("--warmup", type=non_negative_int, default=DEFAULT_WARMUP,
                        help="untimed calls per entry and pass")
    parser.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS, help="interleaved passes over the table")
    parser.add_argument("--num-classes", type=positive_int, default=10, help="classifier outputs of the head")
    parser.add_argument("--in-channels", type=positive_int, default=3, help="input image channels of the stem")


def run(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    start = time.perf_counter()
    with num_threads(args.threads):
        table = measure_latency_table(
            space, args.device, args.batch_size, args.repeats, args.warmup, args.resolution,
            num_classes=args.num_classes, in_channels=args.in_channels, rounds=args.rounds, progress=_progress(),
            amp=args.amp, channels_last=args.channels_last,
        )
    seconds = time.perf_counter() - start
    path = table.save(args.out)
    print(f"measured {len(table.entries)} block entries of {space.name} on {table.device_key} in {seconds:.1f} s "
          f"(batch {table.batch_size}, resolutions {list(table.resolutions)})")
    _print_range(space, table)
    print(f"wrote {path}")
    return 0


def _progress() -> Callable[[int, int], None]:
    """One line per finished pass over the table, with rate and ETA."""
    shown: list[Progress] = []

    def update(done: int, total: int) -> None:
        if not shown:
            shown.append(Progress(get_logger(__name__), "latency table: pass", total, "passes", every_seconds=0))
        shown[0].update(done)

    return update


def _print_range(space: SearchSpace, table: LatencyTable) -> None:
    """Predicted latency of the smallest and largest child at the measured resolutions."""
    small, large = space.min().to_dict(), space.max().to_dict()
    if "resolution" in space.names:
        small["resolution"], large["resolution"] = table.resolutions[0], table.resolutions[-1]
    try:
        low, high = table.predict(space, [space.arch(small), space.arch(large)])
    except MissingLatencyEntryError:
        return
    print(f"predicted latency: {low:.3f} ms (smallest child) .. {high:.3f} ms (largest child)")
