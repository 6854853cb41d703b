"""SearchSpace operations on every shipped space."""

import math
import pickle
import random

import numpy as np
import pytest

from raynas.space import Arch, load_space, shipped_spaces

SHIPPED = sorted(shipped_spaces())


def test_all_expected_spaces_are_shipped():
    assert {"tiny", "mbv3_cifar", "bignas_imagenet", "ofa_mbv3", "nb201"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_and_round_trips(name):
    space = load_space(name)
    rng = random.Random(0)
    assert space.size() > 1
    for _ in range(50):
        arch = space.sample(rng)
        assert space.arch(space.key(arch)) == arch
        assert space.decode(space.encode(arch)) == arch
        assert set(space.encode(arch)) == set(space.names)
        assert space.arch(space.mutate(arch, rng, prob=0.5)) is not None
        child = space.crossover(arch, space.sample(rng), rng)
        assert space.arch(child.to_dict()) == child
    assert space.from_index_matrix(space.index_matrix([space.min(), space.max()])) == [space.min(), space.max()]


@pytest.mark.parametrize("name", SHIPPED)
def test_vectorised_sampling_gives_valid_children(name):
    space = load_space(name)
    archs = space.from_index_matrix(space.sample_index_matrix(200, seed=3))
    for arch in archs:
        assert space.arch(arch.to_dict()) == arch
    assert np.array_equal(space.index_matrix(archs), space.sample_index_matrix(200, seed=3))


def test_min_and_max_take_the_ends_of_every_choice_list():
    space = load_space("mbv3_cifar")
    assert space.min()["s1_depth"] == 2 and space.max()["s1_depth"] == 4
    assert space.max()["s1_b3_kernel"] == 7 and "s1_b2_kernel" not in space.min()


def test_nb201_has_15625_architectures_and_standard_strings():
    space = load_space("nb201")
    assert space.size() == 15625
    archs = list(space.enumerate())
    assert len(archs) == len(set(archs)) == 15625
    key = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    arch = space.arch(key)
    assert arch["edge_1_2"] == "avg_pool_3x3" and arch["edge_2_3"] == "skip_connect"
    assert space.key(arch) == key


def test_size_is_exact_for_conditional_depth():
    space = load_space("tiny")
    enumerated = list(space.enumerate())
    assert len(enumerated) == len(set(enumerated)) == space.size()
    # resolution x stem x per stage (width x sum over depth d of (kernel x expand)^d) x head
    assert space.size() == 2 * 2 * (2 * (4 + 16)) * (2 * (4 + 16)) * 2


def test_counts_of_large_spaces_match_the_closed_form():
    ofa = load_space("ofa_mbv3")
    assert ofa.size() == 25 * (9**2 + 9**3 + 9**4) ** 5
    assert math.log10(load_space("bignas_imagenet").size()) > 15


def test_arch_is_immutable_hashable_and_picklable():
    space = load_space("tiny")
    arch = space.sample(1)
    with pytest.raises(TypeError):
        arch["resolution"] = 12  # type: ignore[index]
    assert hash(arch) == hash(space.arch(arch.to_dict()))
    assert pickle.loads(pickle.dumps(arch)) == arch
    assert isinstance(arch, Arch)


def test_same_seed_gives_same_samples():
    space = load_space("mbv3_cifar")
    assert [space.sample(random.Random(7)) for _ in range(3)] == [space.sample(random.Random(7)) for _ in range(3)]
    assert space.sample(1) != space.sample(2)


def test_decode_accepts_pandas_style_rows():
    space = load_space("tiny")
    arch = space.min()
    row = {k: (float("nan") if v is None else np.int64(v)) for k, v in space.encode(arch).items()}
    row["bn_score"] = 1.5
    assert space.decode(row) == arch
