"""The vectorised BN indicator equals the slow walk over the activated network, and behaves as
DESIGN.md defines it: BN layout decides what it can tell apart, and at init it is a structure count."""

import functools

import numpy as np
import pytest
import torch

from raynas.errors import ArchError, ConfigError
from raynas.estimate import DEPTH_RULES, MEASURES, BNIndicator, NotFittedError, score_direct
from raynas.space import SearchSpace, load_space
from raynas.supernet import BATCHNORMS, Supernet, build_supernet

NUM_ARCHS = 200  # for the BN-NAS default options; the other options reuse the first SUBSET
SUBSET = 40  # the direct walk activates the supernet (about 1.5 ms per mbv3_cifar child)
CASES = [
    ("tiny", "shared"), ("tiny", "private"), ("mbv3_cifar", "shared"), ("mbv3_cifar", "private"),
    ("mbv3_cifar", "private_resolution"),
    ("nb201", "private"),  # NB201 ops own their BN by construction: its layout is always private
]
OPTIONS = [(rule, measure) for rule in DEPTH_RULES for measure in sorted(MEASURES)]


@functools.cache
def space(name: str) -> SearchSpace:
    return load_space(name)


@functools.cache
def trained_like(name: str, bn_layout: str) -> Supernet:
    """A supernet whose gammas are random (some negative), so every score is non-trivial."""
    net = build_supernet(space(name), num_classes=10, bn_layout=bn_layout)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, BATCHNORMS):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.5 + 1.0)
    return net


def at_init(name: str) -> Supernet:
    return build_supernet(space(name), num_classes=10)


def test_arguments_are_stored_unchanged_and_checked_at_fit():
    est = BNIndicator(depth_rule="median", parameterless_score=0.5, measure="abs_gamma")
    assert (est.depth_rule, est.parameterless_score, est.measure) == ("median", 0.5, "abs_gamma")
    with pytest.raises(ConfigError, match=r"depth_rule 'median'.*\['sum', 'mean'\]"):
        est.fit(at_init("tiny"))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"depth_rule": "median"}, "valid depth rules"),
    ({"measure": "abs_beta"}, r"valid measures: \['abs_gamma', 'gamma_shift'\]"),
    ({"parameterless_score": float("nan")}, "finite number"),
])
def test_unknown_options_raise_config_error(kwargs, pattern):
    net = at_init("tiny")
    with pytest.raises(ConfigError, match=pattern):
        BNIndicator(**kwargs).fit(net)
    with pytest.raises(ConfigError, match=pattern):
        score_direct(net, space("tiny").max(), **kwargs)


def test_score_before_fit_raises():
    with pytest.raises(NotFittedError, match=r"call \.fit\(supernet\)"):
        BNIndicator().score([space("tiny").max()])


def test_index_matrix_of_another_space_is_rejected():
    est = BNIndicator().fit(at_init("tiny"))
    with pytest.raises(ArchError, match="shape"):
        est.score(space("nb201").sample_index_matrix(3))
    bad = space("tiny").index_matrix([space("tiny").max()])
    bad[0, 0] = 99
    with pytest.raises(ArchError, match="valid choice index"):
        est.score(bad)


def test_tables_have_one_entry_per_choice_combination():
    mbv3 = BNIndicator().fit(at_init("mbv3_cifar")).table_
    stage = space("mbv3_cifar").spec.stages[1]
    assert mbv3["s1_b3"].axes == ("s1_b3_kernel", "s1_b3_expand", "s1_width")
    assert mbv3["s1_b3"].values.shape == (len(stage.kernel), len(stage.expand), len(stage.width))
    nb201 = BNIndicator().fit(at_init("nb201")).table_
    assert sorted(nb201) == sorted(space("nb201").names)
    assert nb201["edge_0_1"].values.shape == (len(space("nb201").spec.ops),)


@pytest.mark.parametrize("name, bn_layout", CASES)
def test_fast_scores_equal_the_direct_walk(name, bn_layout):
    net, sp = trained_like(name, bn_layout), space(name)
    archs = [sp.min(), sp.max(), *(sp.sample(seed) for seed in range(NUM_ARCHS))]
    matrix = sp.index_matrix(archs)
    for depth_rule, measure in OPTIONS:
        n = len(archs) if (depth_rule, measure) == ("sum", "abs_gamma") else SUBSET
        est = BNIndicator(depth_rule=depth_rule, parameterless_score=0.25, measure=measure).fit(net)
        direct = [score_direct(net, a, depth_rule, 0.25, measure) for a in archs[:n]]
        np.testing.assert_allclose(est.score(matrix[:n]), direct, rtol=1e-9, err_msg=f"{depth_rule=} {measure=}")
        np.testing.assert_array_equal(est.score(archs), est.score(matrix))


@pytest.mark.parametrize("name", ["tiny", "nb201"])
def test_sampled_index_matrix_scores_like_its_archs(name):
    sp = space(name)
    est = BNIndicator(depth_rule="mean").fit(trained_like(name, "private"))
    matrix = sp.sample_index_matrix(500, seed=1)
    np.testing.assert_array_equal(est.score(matrix), est.score(sp.from_index_matrix(matrix)))


@pytest.mark.parametrize("bn_layout, distinguished", [("private", True), ("shared", False)])
def test_only_a_private_bn_layout_tells_kernels_apart(bn_layout, distinguished):
    sp = space("mbv3_cifar")
    small_kernel = sp.arch({**sp.max(), "s1_b0_kernel": 3})
    large_kernel = sp.arch({**sp.max(), "s1_b0_kernel": 7})
    scores = BNIndicator().fit(trained_like("mbv3_cifar", bn_layout)).score([small_kernel, large_kernel])
    assert (scores[0] != scores[1]) == distinguished


@pytest.mark.parametrize("bn_layout, distinguished", [("private", False), ("private_resolution", True)])
def test_only_a_per_resolution_bn_layout_tells_resolutions_apart(bn_layout, distinguished):
    sp = space("mbv3_cifar")
    low, high = (sp.arch({**sp.max(), "resolution": r}) for r in (sp.spec.resolutions[0], sp.spec.resolutions[-1]))
    net = trained_like("mbv3_cifar", bn_layout)
    scores = BNIndicator().fit(net).score([low, high])
    assert (scores[0] != scores[1]) == distinguished
    assert net.export(low)(torch.zeros(2, 3, low["resolution"], low["resolution"])).shape == (2, 10)


@pytest.mark.parametrize("name", ["tiny", "mbv3_cifar"])
def test_at_init_the_indicator_counts_active_blocks(name):
    sp, net = space(name), at_init(name)
    archs = [sp.min(), sp.max(), *(sp.sample(seed) for seed in range(20))]
    blocks = [2 + sum(int(a[f"s{i}_depth"]) for i in range(len(sp.spec.stages))) for a in archs]  # + stem, head
    np.testing.assert_array_equal(BNIndicator().fit(net).score(archs), blocks)
    np.testing.assert_array_equal(BNIndicator(depth_rule="mean").fit(net).score(archs), 1.0)
    np.testing.assert_array_equal(BNIndicator(measure="gamma_shift").fit(net).score(archs), 0.0)


def test_every_searchable_width_changes_the_trained_score():
    sp = space("mbv3_cifar")
    est = BNIndicator().fit(trained_like("mbv3_cifar", "private"))
    base = sp.max().to_dict()
    for dim in ("stem_width", "s2_width", "head_width", "s3_depth", "s1_b0_expand"):
        other = sp.arch({**base, dim: sp.dim(dim).choices[0]})
        assert est.score([other])[0] != est.score([sp.max()])[0], dim


def test_at_init_nb201_counts_bn_ops_plus_parameterless_score():
    sp = space("nb201")
    archs = [sp.min(), sp.max(), *(sp.sample(seed) for seed in range(20))]
    convs = np.array([sum(str(op).startswith("nor_conv") for op in a.values()) for a in archs])
    zeros = np.array([sum(str(op) == "none" for op in a.values()) for a in archs])
    scores = BNIndicator(parameterless_score=0.5).fit(at_init("nb201")).score(archs)
    np.testing.assert_array_equal(scores, convs + 0.5 * (6 - convs - zeros))  # `none` always scores 0
