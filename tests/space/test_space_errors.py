"""Bad space files and bad architectures get errors that name the file, the key and the rule."""

import pytest

from raynas.errors import ArchError, SpaceError
from raynas.space import load_space

GOOD = """
family: mobilenet
resolution: [12, 16]
stem: {width: [8]}
stages:
  - {width: [8, 16], depth: [1, 2], kernel: [3, 5], expand: [1, 3], stride: 2}
head: {width: [32]}
"""


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_loads(tmp_path):
    assert load_space(write(tmp_path, GOOD)).size() == 2 * 2 * (4 + 16)


def test_malformed_yaml(tmp_path):
    with pytest.raises(SpaceError, match=r"bad.yaml: malformed YAML"):
        load_space(write(tmp_path, "family: [mobilenet\nstages: {", "bad.yaml"))


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(SpaceError, match=r"space.yaml: unknown key\(s\) \['widths'\]"):
        load_space(write(tmp_path, GOOD + "widths: [1]\n"))


def test_unknown_stage_key_names_the_path(tmp_path):
    text = GOOD.replace("stride: 2}", "stride: 2, kernal: [3]}")
    with pytest.raises(SpaceError, match=r"space.yaml: stages\[0\]: unknown key\(s\) \['kernal'\]"):
        load_space(write(tmp_path, text))


def test_empty_choice_list(tmp_path):
    text = GOOD.replace("depth: [1, 2]", "depth: []")
    with pytest.raises(SpaceError, match=r"stages\[0\].depth: must be a non-empty list of choices"):
        load_space(write(tmp_path, text))


def test_rule_violations_name_the_rule(tmp_path):
    with pytest.raises(SpaceError, match=r"stages\[0\].depth: every choice must be >= 1, got \[0, 2\]"):
        load_space(write(tmp_path, GOOD.replace("depth: [1, 2]", "depth: [0, 2]")))
    with pytest.raises(SpaceError, match=r"stages\[0\].kernel: every choice must be odd"):
        load_space(write(tmp_path, GOOD.replace("kernel: [3, 5]", "kernel: [3, 4]")))
    with pytest.raises(SpaceError, match=r"resolution: choices must be strictly increasing"):
        load_space(write(tmp_path, GOOD.replace("[12, 16]", "[16, 12]")))


def test_unknown_family_lists_known_ones(tmp_path):
    with pytest.raises(SpaceError, match=r"family: must be one of \['mobilenet', 'nb201'\], got 'resnet'"):
        load_space(write(tmp_path, GOOD.replace("family: mobilenet", "family: resnet")))


def test_unknown_nb201_op(tmp_path):
    text = "family: nb201\nops: [none, conv_9x9]\n"
    with pytest.raises(SpaceError, match=r"ops: unknown op\(s\) \['conv_9x9'\]; valid ops"):
        load_space(write(tmp_path, text))


def test_missing_file_and_unknown_name():
    with pytest.raises(SpaceError, match="space file not found"):
        load_space("/nonexistent/space.yaml")
    with pytest.raises(SpaceError, match=r"unknown space 'tinyy'; shipped spaces: \["):
        load_space("tinyy")


def test_arch_with_unknown_dimension_lists_valid_ones():
    space = load_space("tiny")
    values = space.min().to_dict() | {"s9_width": 8}
    with pytest.raises(ArchError, match=r"unknown dimension 's9_width'.*valid dimensions: resolution, stem_width"):
        space.arch(values)


def test_arch_with_unknown_choice_lists_valid_choices():
    space = load_space("tiny")
    with pytest.raises(ArchError, match=r"s0_b0_kernel=7 is not a valid choice; valid choices: \[3, 5\]"):
        space.arch(space.min().to_dict() | {"s0_b0_kernel": 7})


def test_resolution_not_in_space():
    space = load_space("mbv3_cifar")
    with pytest.raises(ArchError, match=r"resolution=64 is not a valid choice; valid choices: \[24, 28, 32\]"):
        space.arch(space.max().to_dict() | {"resolution": 64})


def test_missing_active_dimension_and_bad_keys():
    space = load_space("tiny")
    values = space.max().to_dict()
    del values["s1_b1_kernel"]
    with pytest.raises(ArchError, match="s1_b1_kernel' is missing"):
        space.arch(values)
    with pytest.raises(ArchError, match="parts"):
        space.arch("r12-s8")
    with pytest.raises(ArchError, match="must have 3"):
        load_space("nb201").arch("|none~0|")
