"""Options shared by several commands, so each flag means the same thing everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from raynas.errors import ConfigError
from raynas.train import Scaling, TrainConfig


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help="Ray cluster: 'auto', 'ray://HOST:10001'; default: a local Ray instance")


def add_training(parser: argparse.ArgumentParser, default_mode: str = "bn_only") -> None:
    parser.add_argument("--data", default="digits", help="digits | synthetic | cifar10:ROOT | imagefolder:ROOT")
    parser.add_argument("--download", action="store_true", help="let cifar10:ROOT download the dataset")
    parser.add_argument("--mode", choices=["bn_only", "full"], default=default_mode)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--train-images", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--config", type=Path, default=None, help="YAML file of TrainConfig keys")
    parser.add_argument("--workers", type=int, default=0, help="Ray Train workers; 0 runs in this process")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (nccl)")
    parser.add_argument("--name", default=None, help="run name; re-using it resumes the run")
    add_address(parser)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then explicit flags; unknown keys are rejected."""
    values: dict[str, Any] = {}
    if args.config is not None:
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{args.config}: a training config must be a mapping of TrainConfig keys")
        values.update(loaded)
    flags = {"mode": args.mode, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "train_images": args.train_images, "seed": args.seed}
    values.update({k: v for k, v in flags.items() if v is not None})
    return TrainConfig.from_dict(values)


def scaling(args: argparse.Namespace) -> Scaling:
    return Scaling(num_workers=args.workers, use_gpu=args.gpu)


def data_spec(args: argparse.Namespace):
    """The DATA string, or loaded splits when a download was asked for."""
    if args.download:
        from raynas.data import load_data

        return load_data(args.data, download=True)
    return args.data
