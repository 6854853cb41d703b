"""Argument parsing and dispatch. Each command lives in its own module with ``add`` and ``run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

import optuna

import raynas
from raynas.cli import (
    bpe_cmd,
    calibrate_cmd,
    data_cmd,
    export_cmd,
    latency_cmd,
    proxy_cmd,
    report_cmd,
    retrain_cmd,
    run_cmd,
    score_cmd,
    search_cmd,
    space_cmd,
    train_cmd,
)
from raynas.errors import RaynasError

COMMANDS: dict[str, ModuleType] = {
    "run": run_cmd,
    "space": space_cmd,
    "train": train_cmd,
    "retrain": retrain_cmd,
    "score": score_cmd,
    "calibrate": calibrate_cmd,
    "search": search_cmd,
    "report": report_cmd,
    "latency": latency_cmd,
    "export": export_cmd,
    "bpe": bpe_cmd,
    "data": data_cmd,
    "proxy": proxy_cmd,
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, like every other raynas error: no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raynas", description="Neural architecture search on Ray.")
    parser.add_argument("--version", action="version", version=f"raynas {raynas.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add(sub.add_parser(name, help=module.__doc__.strip().splitlines()[0] if module.__doc__ else None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except RaynasError as err:
        print(f"raynas {args.command}: error: {err}", file=sys.stderr)
        return 2
