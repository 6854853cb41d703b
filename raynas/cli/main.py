"""Argument parsing and dispatch. Each command lives in its own module with ``add`` and ``run``."""

from __future__ import annotations

import argparse
import logging
import os
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
    ranker_cmd,
    report_cmd,
    retrain_cmd,
    run_cmd,
    score_cmd,
    search_cmd,
    space_cmd,
    train_cmd,
)
from raynas.cli.config_file import add_config_option, parse_with_config
from raynas.cli.writer_lock import writer_lock
from raynas.errors import RaynasError
from raynas.interrupts import Terminated, exit_code, raise_on_sigterm
from raynas.logs import set_verbosity
from raynas.ray_env import check_address, set_connect_timeout, set_ray_log_level

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
    "ranker": ranker_cmd,
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, like every other raynas error: no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _HelpWithDefaults(argparse.HelpFormatter):
    """``--help`` shows each option's default where it has one (not for None, or a switch that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
        if shown and "%(default)" not in text and "default" not in text:
            text += " (default: %(default)s)"
        return text.strip() or None


def verbosity_options(suppress: bool) -> "_Parser":
    """``-q``/``-v``, accepted before and after the command (``raynas -q run``, ``raynas run -q``)."""
    parent = _Parser(add_help=False)
    default = argparse.SUPPRESS if suppress else 0
    parent.add_argument("-q", "--quiet", action="count", default=default,
                        help="only warnings and errors: no progress lines")
    parent.add_argument("-v", "--verbose", action="count", default=default,
                        help="more detail, including Ray's and Optuna's own log lines")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raynas", description="Neural architecture search on Ray.",
                     parents=[verbosity_options(suppress=False)])
    parser.add_argument("--version", action="version", version=f"raynas {raynas.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0] if module.__doc__ else None,
                                 parents=[verbosity_options(suppress=True)], formatter_class=_HelpWithDefaults)
        module.add(command)
        add_config_option(command)
        for action in command._actions:  # argparse shows no default for an option without help
            if action.help is None and action.option_strings and action.default not in (None, False, []):
                action.help = "(default: %(default)s)"
    return parser


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser, by name."""
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def configure_output(args: argparse.Namespace) -> None:
    """raynas's progress lines at INFO (``-q``: warnings only, ``-v``: debug); Ray's and Optuna's
    own lines only with ``-v``."""
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    set_verbosity(level)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    set_ray_log_level(logging.INFO if args.verbose else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse_with_config(parser, command_parsers(parser), argv)
    except RaynasError as err:  # a bad --config file: one line, like a bad flag
        parser.exit(2, f"raynas: error: {err}\n")
    configure_output(args)
    raise_on_sigterm()
    try:
        if hasattr(args, "connect_timeout"):  # a command that can join a cluster: fail fast where none answers
            set_connect_timeout(args.connect_timeout)
            check_address(args.address or os.environ.get("RAY_ADDRESS") or None)
        with writer_lock(args):
            return int(COMMANDS[args.command].run(args) or 0)
    except RaynasError as err:
        print(f"raynas {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (Terminated)
        print(f"raynas {args.command}: {_stopped(interrupt, args)}", file=sys.stderr)
        return exit_code(interrupt)


def _stopped(interrupt: KeyboardInterrupt, args: argparse.Namespace) -> str:
    """The one line an interrupted command ends with: what stopped it, and how to go on."""
    cause = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted (Ctrl-C)"
    out = getattr(args, "out", None)
    if out is None:
        return f"{cause}; nothing was written"
    return f"{cause}; what finished is kept in {out}: run the same command again to resume"
