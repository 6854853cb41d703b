"""``--config FILE`` on every command: a YAML mapping of the command's options; flags given win.

Keys are the options' names (``search-batch`` or ``search_batch``); each value goes through the
same type check as its flag, so ``trials: many`` fails like ``--trials many`` would, naming the
file and the key. A required option (``--out``) may come from the file. ``train`` and
``retrain`` keep their own ``--config`` (a file of ``TrainConfig`` keys, the training recipe).
Shipped examples: ``search_spaces/configs/``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raynas.errors import ConfigError
from raynas.space.reader import read_yaml

GENERIC = "_options_from_config"
"""Namespace flag set by the commands whose ``--config`` holds their options."""


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` for a command that has none of its own."""
    if any("--config" in action.option_strings for action in parser._actions):
        return
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="YAML mapping of this command's options (e.g. `trials: 200`); flags given win")
    parser.set_defaults(**{GENERIC: True})


def parse_with_config(parser: argparse.ArgumentParser, commands: dict[str, argparse.ArgumentParser],
                      argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; when the command's ``--config`` names a file, its values become defaults and
    ``argv`` is parsed again, so every flag given still wins."""
    required = [a for sub in commands.values() for a in sub._actions if a.required and a.option_strings]
    for action in required:  # a required option may come from the file: check once it is read
        action.required = False
    try:
        args = parser.parse_args(argv)
    finally:
        for action in required:
            action.required = True
    if getattr(args, GENERIC, False) and args.config is not None:
        command = commands[args.command]
        command.set_defaults(**_options(command, args.config, args.command))
    return parser.parse_args(argv)


def _options(parser: argparse.ArgumentParser, path: Path, command: str) -> dict[str, Any]:
    values = read_yaml(path, ConfigError)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of `raynas {command}` options, "
                          f"got {type(values).__name__}")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    options = {}
    for key, value in values.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            known = ", ".join(sorted(name.replace("_", "-") for name in actions))
            raise ConfigError(f"{path}: unknown option {key!r} for `raynas {command}`; options: {known}")
        action = actions[dest]
        options[dest] = _converted(action, value, f"{path}: {key}")
        action.required = False
    return options


def _converted(action: argparse.Action, value: Any, where: str) -> Any:
    """``value`` checked as the flag would check it: its type, its choices, true/false for switches."""
    if action.nargs == 0:  # --flag, --no-flag, -q
        if isinstance(action, argparse._CountAction):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where} must be a count (an integer >= 0), got {value!r}")
            return value
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value if isinstance(action, argparse.BooleanOptionalAction) else (
            action.const if value else action.default)
    if isinstance(action, argparse._AppendAction):
        return [_one(action, v, where) for v in (value if isinstance(value, list) else [value])]
    return _one(action, value, where)


def _one(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where} must be a single value, got {value!r}")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err or f'invalid value {value!r}'}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{where} must be one of {list(action.choices)}, got {value!r}")
    return converted
