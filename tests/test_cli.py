"""The command line, run as users run it."""

import subprocess
import sys

import pytest

from raynas.cli import main


def test_space_command_prints_dimensions_count_and_flops(capsys):
    assert main(["space", "nb201"]) == 0
    out = capsys.readouterr().out
    assert "architectures: 15,625" in out and "edge_0_1" in out and "FLOPs (MACs): 7.78M (min)" in out


def test_unknown_space_is_a_clear_error(capsys):
    assert main(["space", "nope"]) == 2
    assert "unknown space 'nope'" in capsys.readouterr().err


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "raynas", "space", "tiny"], capture_output=True, text=True)
    assert result.returncode == 0 and "architectures: 12,800" in result.stdout


def test_version_is_the_packaged_one(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"raynas {version('raynas')}"
