"""`--config FILE` on every command, `--help` defaults, and `raynas train` defaults that learn."""

import re
from pathlib import Path

import pytest

from raynas.cli import main
from raynas.cli.config_file import parse_with_config
from raynas.cli.main import build_parser, command_parsers
from raynas.train import load_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "search_spaces" / "configs"
POSITIONALS = {"search": ["nb201"], "score": ["nb201", "--sample", "100"]}
"""What a shipped config of a command still needs on the command line."""


def parse(argv):
    parser = build_parser()
    return parse_with_config(parser, command_parsers(parser), argv)


def test_every_command_takes_a_config_file():
    for name, sub in command_parsers(build_parser()).items():
        assert any("--config" in a.option_strings for a in sub._actions), name


def config_command(path):
    """The command a shipped config is for: its name's prefix (``search-...``), else the first
    ``raynas COMMAND`` its header shows (``nb201_search.yaml``: ``raynas search nb201 --config ...``)."""
    commands = command_parsers(build_parser())
    prefix = path.stem.split("-")[0]
    if prefix in commands:
        return prefix
    shown = re.search(r"^#\s+raynas (\w+)", path.read_text(), flags=re.MULTILINE)
    assert shown and shown.group(1) in commands, f"{path.name}: name a command, or show `raynas COMMAND` in its header"
    return shown.group(1)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_as_it_is(path):
    command = config_command(path)
    args = parse([command, *POSITIONALS.get(command, []), "--config", str(path)])
    values = {str(k).replace("-", "_"): v for k, v in __import__("yaml").safe_load(path.read_text()).items()}
    for key, value in values.items():
        got = getattr(args, key)
        assert str(got) == str(value) or got == value, (key, got, value)


def test_flags_win_over_the_file_and_a_required_option_may_come_from_it(tmp_path):
    config = tmp_path / "search.yaml"
    config.write_text("trials: 50\nsearch-batch: 5\nout: runs/x\nconstraint: ['flops<=2e8', 'params<=1e6']\n"
                      "new_run: true\n")
    args = parse(["search", "ckpt", "--config", str(config), "--trials", "7"])
    assert (args.trials, args.search_batch, args.out, args.new_run) == (7, 5, Path("runs/x"), True)
    assert args.constraint == ["flops<=2e8", "params<=1e6"]


@pytest.mark.parametrize("text, message", [
    ("trials: many\n", r"search.yaml: trials: must be an integer >= 1, got 'many'"),
    ("trails: 5\n", r"search.yaml: unknown option 'trails' for `raynas search`; options: .*trials"),
    ("depth-rule: median\n", r"search.yaml: depth-rule must be one of \['sum', 'mean'\], got 'median'"),
    ("new-run: 1\n", r"search.yaml: new-run must be true or false, got 1"),
    ("- trials\n", r"search.yaml: a config file must be a mapping of `raynas search` options, got list"),
])
def test_a_bad_config_file_is_one_line_naming_file_and_key(tmp_path, capsys, text, message):
    config = tmp_path / "search.yaml"
    config.write_text(text + "out: o\n" if not text.startswith("-") else text)
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "ckpt", "--config", str(config)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and re.search(message, err), err


def test_a_required_option_is_still_required_without_a_file(capsys):
    with pytest.raises(SystemExit):
        main(["search", "ckpt"])
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trials TRIALS (default: 1000)" in text and "(default: nsga2)" in text


def test_train_defaults_learn_on_the_embedded_data(ray_local, tmp_path):
    """Two epochs of `raynas train` with no training flag leave chance loss (ln 10 = 2.30) behind
    (measured: 1.71; the old defaults, lr 0.1 and a frozen classifier, stayed at 2.30)."""
    assert main(["train", "tiny", "--epochs", "2", "--out", str(tmp_path), "--name", "t"]) == 0
    loaded = load_checkpoint(tmp_path / "t" / "checkpoint_epoch_0002")
    assert loaded.config.lr == 1.0 and loaded.config.classifier == "trainable"
    assert loaded.metrics[-1]["loss_max"] < 2.0, loaded.metrics[-1]
    assert main(["train", "tiny", "--epochs", "1", "--mode", "full", "--out", str(tmp_path), "--name", "f"]) == 0
    full = load_checkpoint(tmp_path / "f" / "checkpoint_epoch_0001").config
    assert (full.mode, full.schedule, full.bn_layout) == ("full", "exp_decay_const", "shared")  # BigNAS's recipe
