"""Options shared by several commands, so each flag means the same thing everywhere."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from raynas.errors import ConfigError
from raynas.ray_env import CONNECT_TIMEOUT
from raynas.space.reader import read_yaml
from raynas.train import Scaling, TrainConfig

N = TypeVar("N", int, float)
DEFAULT_TRAINING = {"mode": "bn_only", "epochs": 15, "batch_size": 64, "lr": 1.0, "classifier": "trainable"}
"""BN-only supernet training of the main job (``raynas run``); ``raynas train`` takes its rate and classifier."""


def at_least(low: float, kind: Callable[[str], N] = int, *, strict: bool = False) -> Callable[[str], N]:
    """An argparse ``type=`` that parses ``kind`` and requires ``value >= low`` (``> low`` when strict).

    A bad value then fails as argparse's one-line error, naming the option, the rule and the value,
    before any data is loaded or Ray is started. Floats must also be finite.
    """
    rule = f"{'>' if strict else '>='} {low:g}"
    noun = "an integer" if kind is int else "a finite number"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun} {rule}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {noun} {rule}, got {text}")
        return value

    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)
positive_float = at_least(0.0, float, strict=True)
non_negative_float = at_least(0.0, float)


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="Ray cluster: 'auto', 'ray://HOST:10001'; default: a local Ray instance")
    parser.add_argument("--connect-timeout", type=positive_float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                        help=f"give up on an --address that does not answer within this time (default "
                             f"{CONNECT_TIMEOUT:g})")


def add_training(parser: argparse.ArgumentParser, default_mode: str = "bn_only") -> None:
    parser.add_argument("--data", default="digits", help="digits | synthetic | cifar10:ROOT | imagefolder:ROOT | shards:ROOT")
    parser.add_argument("--download", action="store_true", help="let cifar10:ROOT download the dataset")
    parser.add_argument("--mode", choices=["bn_only", "full"], default=None,
                        help=f"bn_only: train BN parameters (and the classifier) alone; full: every weight "
                             f"(default: the --config file's, else {default_mode})")
    parser.set_defaults(default_mode=default_mode)
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"default: the --config file's, else {TrainConfig.epochs}")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help=f"training images per step and worker; default: the --config file's, else "
                             f"{TrainConfig.batch_size}")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="SGD learning rate; default: the --config file's, else the command's recipe")
    parser.add_argument("--train-images", type=positive_int, default=None, help="use only the first N training images")
    parser.add_argument("--seed", type=int, default=None, help=f"default: the --config file's, else {TrainConfig.seed}")
    parser.add_argument("--config", type=Path, default=None, help="YAML file of TrainConfig keys")
    parser.add_argument("--workers", type=non_negative_int, default=0, help="Ray Train workers; 0 runs in this process")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (nccl)")
    parser.add_argument("--name", default=None, help="run name; re-using it resumes the run")
    add_address(parser)


def train_config(args: argparse.Namespace,
                 defaults: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> TrainConfig:
    """``defaults(mode, chosen)``, then the --config file, then explicit flags; unknown keys are rejected.

    The mode is the flag's, else the file's, else the command's default; ``defaults`` sees it and
    the keys chosen by file and flags (a recipe may scale with the epochs).
    """
    loaded: dict[str, Any] = {}
    if args.config is not None:
        loaded = read_yaml(args.config, ConfigError) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{args.config}: a training config must be a mapping of TrainConfig keys")
    flags = {"mode": args.mode, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "train_images": args.train_images, "seed": args.seed}
    chosen = {**loaded, **{k: v for k, v in flags.items() if v is not None}}
    chosen.setdefault("mode", args.default_mode)
    base = defaults(chosen["mode"], chosen) if defaults is not None else {}
    return TrainConfig.from_dict({**base, **chosen})


def scaling(args: argparse.Namespace) -> Scaling:
    return Scaling(num_workers=args.workers, use_gpu=args.gpu)
