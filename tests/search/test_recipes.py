"""Per-space defaults of the depth rule and the supernet sampling, and the flags that override them."""

import pytest

from raynas.cli import main
from raynas.cli.main import build_parser
from raynas.errors import ConfigError
from raynas.search.recipes import (
    default_depth_rule,
    default_sampling,
    has_elastic_depth,
    resolve_depth_rule,
    resolve_sampling,
)
from raynas.space import load_space

SHIPPED = ["tiny", "mbv3_cifar", "bignas_imagenet", "ofa_mbv3", "nb201"]


@pytest.mark.parametrize("name", SHIPPED)
def test_defaults_per_family(name):
    space = load_space(name)
    mobilenet = space.family == "mobilenet"
    assert has_elastic_depth(space) == mobilenet  # every shipped mobilenet space has elastic depth, nb201 none
    assert default_depth_rule(space) == ("mean" if mobilenet else "sum")
    assert default_sampling(space) == ("sandwich" if mobilenet else "uniform")
    assert resolve_depth_rule(None, space) == default_depth_rule(space)
    assert resolve_sampling(None, space) == default_sampling(space)


def test_fixed_depth_keeps_the_sum_and_explicit_values_win():
    space = load_space("tiny")
    definition = {**space.definition, "stages": [{**s, "depth": [1]} for s in space.definition["stages"]]}
    from raynas.space import space_from_dict

    fixed = space_from_dict({**definition, "name": "tiny_fixed_depth"})
    assert not has_elastic_depth(fixed) and default_depth_rule(fixed) == "sum"
    assert resolve_depth_rule("sum", space) == "sum" and resolve_sampling("uniform", space) == "uniform"
    assert resolve_depth_rule(None, None) is None


def test_bad_values_name_the_valid_ones():
    space = load_space("tiny")
    with pytest.raises(ConfigError, match=r"unknown depth_rule 'median'; valid depth rules: \['sum', 'mean'\]"):
        resolve_depth_rule("median", space)
    with pytest.raises(ConfigError, match=r"unknown sampling 'random'; valid samplings: \['sandwich', 'uniform'\]"):
        resolve_sampling("random", space)


@pytest.mark.parametrize("argv", [
    ["search", "CKPT", "--out", "OUT"],
    ["run"],
    ["score", "CKPT", "--all", "--out", "OUT"],
    ["bpe", "BPE.yaml", "--reference", "REF", "--out", "OUT"],
])
def test_depth_rule_flag_defaults_to_the_space_and_refuses_bad_values(argv, capsys):
    assert build_parser().parse_args(argv).depth_rule is None
    assert build_parser().parse_args([*argv, "--depth-rule", "mean"]).depth_rule == "mean"
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--depth-rule", "median"])
    assert exit_.value.code == 2
    assert "argument --depth-rule: invalid choice: 'median' (choose from 'sum', 'mean')" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["bpe", "BPE.yaml", "--reference", "REF", "--out", "OUT"], ["run"]])
def test_sampling_flag_defaults_to_the_space_and_refuses_bad_values(argv, capsys):
    assert build_parser().parse_args(argv).sampling is None
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--sampling", "random"])
    assert exit_.value.code == 2
    assert "argument --sampling: invalid choice: 'random'" in capsys.readouterr().err
