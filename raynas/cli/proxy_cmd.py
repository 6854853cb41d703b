"""Train architectures standalone under a cheap proxy setting (BPE) and rank them by val accuracy
or training speed.

    raynas proxy SPACE --archs FILE --setting FILE.yaml [--data DATA] [--out DIR]
                 [--reference CSV --accuracy-column NAME] [--rank-by accuracy|tse|tse_e] [--epochs N ...]

Writes ``DIR/proxy.parquet`` (one row per architecture and setting; re-running resumes) and
prints a table; with ``--reference``, Kendall tau and Spearman rho of the ``--rank-by`` score
against its accuracies.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raynas.cli.common import (
    add_address,
    at_least,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from raynas.cli.estimate_common import read_arch_file
from raynas.train.config import AMPS
from raynas.train.speed import RANK_BY

if TYPE_CHECKING:  # the bpe package pulls in Ray Tune and scipy: load it only when the command runs
    import pandas as pd

    from raynas.bpe import Reference
    from raynas.bpe.proxy_setting import ProxySetting
    from raynas.space import SearchSpace

SETTING_FLAGS: dict[str, tuple[Any, str]] = {
    "channels": (positive_int, "C: channels of the first stage"),
    "cells_per_stage": (positive_int, "N: cells per stage"),
    "resolution": (at_least(4), "input size the images are resized to"),
    "epochs": (positive_int, "training epochs"),
    "batch_size": (positive_int, "training batch size"),
    "lr": (positive_float, "SGD learning rate (cosine schedule)"),
    "data_fraction": (positive_float, "fraction of the training split, in (0, 1]"),
    "weight_decay": (non_negative_float, "SGD weight decay"),
    "cutout": (non_negative_int, "side of the Cutout square in px (0: off)"),
    "seed": (non_negative_int, "init, batch order and the train/val split"),
}
"""Setting key -> (argparse type, help); ``--augment/--no-augment`` and ``--amp`` are added apart."""


def add_setting_overrides(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """``--channels``, ``--lr``, ...: one flag per ``SETTING_FLAGS`` key (but ``exclude``), winning over ``--setting``."""
    group = parser.add_argument_group("setting overrides (win over --setting)")
    for key, (kind, text) in SETTING_FLAGS.items():
        if key not in exclude:
            group.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, help=text)
    group.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                       help="random crop and flip while training")
    group.add_argument("--amp", choices=list(AMPS), default=None, help="bf16: train under bfloat16 autocast")


def setting_from_args(args: argparse.Namespace, space: SearchSpace) -> ProxySetting:
    """``--setting`` (default: the paper's BPE1) with the override flags given applied."""
    from raynas.bpe.proxy_setting import ProxySetting, load_proxy_setting

    setting = load_proxy_setting(args.setting, space) if args.setting is not None else ProxySetting()
    keys = [k for k in (*SETTING_FLAGS, "augment", "amp") if hasattr(args, k)]
    return setting.replace("command line", **{key: getattr(args, key) for key in keys})


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", help="space name or .yaml path (nb201 family)")
    parser.add_argument("--archs", type=Path, required=True,
                        help="keys, one per line, or a CSV/Parquet file with an `arch` column")
    parser.add_argument("--setting", type=Path, default=None,
                        help="YAML of proxy setting keys, or a bpe_result.json of `raynas bpe` "
                             "(default: the paper's BPE1, see search_spaces/bpe/proxy/nb201_cifar10_proxy.yaml)")
    parser.add_argument("--data", default="digits", help="digits | synthetic | cifar10:ROOT | imagefolder:ROOT")
    parser.add_argument("--out", type=Path, default=Path("runs/proxy"), help="folder of proxy.parquet (resumed)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="table (.csv/.parquet) with `arch` and true accuracies, to rank against")
    parser.add_argument("--accuracy-column", default="accuracy", help="the reference's accuracy column")
    parser.add_argument("--rank-by", choices=RANK_BY, default="accuracy",
                        help="score that ranks the architectures: final val top-1, or the sum of training losses "
                             "over all epochs (tse) or the last one (tse_e), lower is better (Ru et al., 2021)")
    add_setting_overrides(parser)
    parser.add_argument("--cpus-per-arch", type=positive_float, default=1.0,
                        help="CPUs (and torch threads) per architecture's task")
    parser.add_argument("--gpu", action="store_true", help="one GPU per architecture")
    add_address(parser)


def run(args: argparse.Namespace) -> int:
    from raynas.bpe.proxy import (
        check_reference_covers,
        load_reference_column,
        proxy_child_space,
        proxy_evaluate,
    )
    from raynas.space import load_space

    space = load_space(args.space)
    setting = setting_from_args(args, space)
    proxy_child_space(space, setting)  # refuses a family it cannot map, before anything is read or trained
    archs = read_arch_file(args.archs, space)
    reference = None
    if args.reference is not None:
        reference = load_reference_column(args.reference, space, args.accuracy_column)
        check_reference_covers(reference, [space.key(a) for a in archs])
    print(f"proxy {setting.describe()} on {args.data}: {len(archs)} architectures", flush=True)
    rows = proxy_evaluate(space, archs, setting, args.data, args.out, address=args.address, use_gpu=args.gpu,
                          cpus_per_arch=args.cpus_per_arch)
    _report(rows, reference, args.accuracy_column, args.out, args.rank_by)
    return 0


def _report(rows: pd.DataFrame, reference: Reference | None, column: str, out: Path, rank_by: str) -> None:
    from raynas.bpe.proxy import PROXY_FILE, proxy_scores, rank_against

    frame = rows[["arch", "proxy_accuracy", "tse", "tse_e", "seconds", "status"]].copy()
    if reference is not None:
        frame[column] = frame["arch"].map(dict(zip(reference.keys, reference.accuracy)))
    scores = proxy_scores(rows, rank_by)
    frame = frame.loc[scores.sort_values(ascending=False, na_position="last", kind="stable").index]
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"mean seconds per architecture: {rows['seconds'].mean():.1f}")
    unscored = int((rows["status"].eq("ok") & scores.isna()).sum())
    if unscored:
        print(f"{unscored} architecture(s) have no {rank_by}: their rows were written before raynas recorded it; "
              "train them into a new --out to rank them by it")
    if reference is not None:
        ranks = rank_against(rows, reference, rank_by)
        print(f"ranked by {rank_by}, against {reference.source}:{column} over {ranks['archs']:.0f} architectures: "
              f"spearman rho {ranks['spearman_rho']:.4f}  kendall tau {ranks['kendall_tau']:.4f}")
    print(f"wrote {out / PROXY_FILE}")
