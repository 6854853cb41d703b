"""raynas's output: library progress goes through the `raynas` logger, -q/-v set how much shows."""

import ast
import logging
from pathlib import Path

import pytest

from raynas import logs
from raynas.cli import main
from raynas.cli.main import build_parser
from raynas.logs import Progress, format_seconds, get_logger, set_verbosity

PACKAGE = Path(__file__).resolve().parents[1] / "raynas"


@pytest.fixture(autouse=True)
def default_verbosity():
    yield
    set_verbosity(logging.INFO)


def test_the_library_never_prints():
    """Only the CLI writes to the terminal itself; library modules log (so -q and drivers control them)."""
    printing = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not printing, f"print() in library modules: {printing}"


def test_progress_on_stdout_problems_on_stderr_once_each(capsys):
    logger = get_logger("raynas.test")
    logger.info("a progress line")
    logger.warning("a problem")
    logger.debug("a detail")
    out, err = capsys.readouterr()
    assert out == "[raynas] a progress line\n" and err == "[raynas] a problem\n"
    set_verbosity(logging.WARNING)
    logger.info("hidden")
    logger.warning("still shown")
    assert capsys.readouterr() == ("", "[raynas] still shown\n")
    set_verbosity(logging.DEBUG)
    logger.debug("a detail")
    assert capsys.readouterr().out == "[raynas] a detail\n"


@pytest.mark.parametrize("argv, level", [
    (["space", "tiny"], logging.INFO),
    (["-q", "space", "tiny"], logging.WARNING),
    (["space", "tiny", "--quiet"], logging.WARNING),
    (["space", "tiny", "-v"], logging.DEBUG),
    (["-v", "space", "tiny"], logging.DEBUG),
])
def test_quiet_and_verbose_before_or_after_the_command(argv, level, capsys):
    assert main(argv) == 0
    assert logging.getLogger(logs.ROOT).level == level
    assert "tiny" in capsys.readouterr().out  # a command's own output is not a log line: -q keeps it


def test_every_command_takes_quiet_and_verbose():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them here
    for name, sub in commands.items():
        flags = {flag for action in sub._actions for flag in action.option_strings}  # noqa: SLF001
        assert {"-q", "--quiet", "-v", "--verbose"} <= flags, name


def test_progress_line_has_rate_and_eta(monkeypatch, capsys):
    clock = iter([100.0, 110.0, 120.0])
    monkeypatch.setattr(logs.time, "monotonic", lambda: next(clock))
    progress = Progress(get_logger("raynas.test"), "search", 40, "trials", every_seconds=0)
    progress.update(10)  # 10 trials in 10 s: 1/s, 30 left
    progress.update(40, "done")
    assert capsys.readouterr().out.splitlines() == [
        "[raynas] search 10/40 (1 trials/s, ETA 30 s)", "[raynas] search 40/40 (2 trials/s); done"]
    assert [format_seconds(s) for s in (42, 185, 7440)] == ["42 s", "3 min 5 s", "2 h 4 min"]
