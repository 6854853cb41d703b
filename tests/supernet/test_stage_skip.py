"""BigNAS's stage-transition shortcut: opt-in per space, exported exactly, invisible to BN scores."""

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from raynas.cost import CostModel
from raynas.errors import ConfigError, SpaceError
from raynas.estimate import BNIndicator
from raynas.space import load_space, shipped_spaces, space_from_dict
from raynas.supernet import BATCHNORMS, build_supernet, load_child, save_child
from raynas.supernet.blocks import StageShortcut
from raynas.supernet.mobilenet import with_stage_skip
from raynas.train.modes import zero_init_residual_gamma

SKIP_SPACES = {"tiny": 6, "mbv3_cifar": 2}  # space -> children checked (kept small: CPU test)


def randomise(net: torch.nn.Module, seed: int, convs: bool = True) -> None:
    """Non-trivial BN parameters and statistics and shortcut convs, so every path matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, BATCHNORMS):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.5 + 1.0)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            if convs and isinstance(m, StageShortcut) and m.conv is not None:  # not the identity it starts as
                m.conv.weight.copy_(torch.randn(m.conv.weight.shape, generator=gen) * 0.3)


def shortcuts(net: torch.nn.Module) -> list[StageShortcut]:
    return [m for m in net.modules() if isinstance(m, StageShortcut)]


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
def test_shipped_spaces_have_no_stage_skip(name):
    space = load_space(name)
    if space.family != "mobilenet":
        pytest.skip("stage_skip is a mobilenet key")
    net = build_supernet(space, 10)
    assert not space.spec.stage_skip and shortcuts(net) == []
    assert not any("shortcut" in k for k in net.state_dict())


def test_stage_skip_gives_every_stage_one_shortcut_and_keeps_the_rest():
    plain, skip = load_space("tiny"), with_stage_skip(load_space("tiny"))
    assert skip.definition["stage_skip"] is True and skip.name == "tiny" and skip.dims == plain.dims
    net, base = build_supernet(skip, 10), build_supernet(plain, 10)
    assert [b.shortcut is not None for stage in net.stages for b in stage] == [True, False, True, False]
    extra = set(net.state_dict()) - set(base.state_dict())
    assert extra == {"stages.0.0.shortcut.conv.weight", "stages.1.0.shortcut.conv.weight"}
    assert set(base.state_dict()) < set(net.state_dict())
    assert with_stage_skip(skip, enabled=False).spec.stage_skip is False


def test_space_key_is_validated():
    definition = {**load_space("tiny").definition, "stage_skip": "yes"}
    with pytest.raises(SpaceError, match=r"stage_skip: must be true or false, got 'yes'"):
        space_from_dict(definition, source="tiny.yaml")
    with pytest.raises(ConfigError, match="mobilenet family only, got family 'nb201'"):
        with_stage_skip(load_space("nb201"))


@pytest.mark.parametrize("name", sorted(SKIP_SPACES))
def test_export_matches_supernet_and_cost_model(name):
    space = with_stage_skip(load_space(name))
    net = build_supernet(space, num_classes=10, seed=1)
    randomise(net, seed=2)
    net.eval()
    cost = CostModel(space, num_classes=10, in_channels=3)
    rng = random.Random(0)
    archs = [space.max(), space.min()] + [space.sample(rng) for _ in range(SKIP_SPACES[name])]
    for arch, params, macs in zip(archs, cost.params(archs), cost.flops(archs)):
        size = space.resolution(arch)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
        child = net.export(arch).eval()
        assert len(shortcuts(child)) == len(space.spec.stages)
        with torch.no_grad():
            assert (net(x, arch) - child(x)).abs().max().item() <= 1e-5, space.key(arch)
        assert sum(p.numel() for p in child.parameters()) == params
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            child(x[:1])
        assert counter.get_total_flops() == 2 * macs, space.key(arch)


def test_shortcut_projects_only_where_widths_differ():
    space = with_stage_skip(load_space("tiny"))
    net = build_supernet(space, 10)
    same = space.arch({**space.min().to_dict(), "stem_width": 8, "s0_width": 8})  # stem 8 -> stage 0 width 8
    first = net.export(same).blocks[0]
    assert first.shortcut is not None and first.shortcut.conv is None  # pooling only
    assert net.export(space.max()).blocks[0].shortcut.conv.weight.shape == (16, 12, 1, 1)


def test_with_zero_gammas_a_stage_starts_as_an_identity_shortcut():
    space = with_stage_skip(load_space("tiny"))
    net = build_supernet(space, 10).eval()
    zero_init_residual_gamma(net)
    block = net.stages[0][0]
    arch = space.max()  # stem 12 channels -> stage 0 width 16, stride 2
    x = torch.randn(2, 12, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), net.activated(arch):
        y = block(x)
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    assert torch.allclose(y[:, :12], pooled, atol=1e-6) and float(y[:, 12:].abs().max()) == 0.0


def test_saved_child_loads_with_its_shortcuts(tmp_path):
    space = with_stage_skip(load_space("tiny"))
    net = build_supernet(space, 10, in_channels=1, seed=4)
    randomise(net, seed=5)
    net.eval()
    arch = space.sample(random.Random(1))
    from tests.supernet.test_export import data_for

    save_child(net, arch, tmp_path / "child", data_for(net))
    child, loaded_arch, loaded_space = load_child(tmp_path / "child")
    assert loaded_arch == arch and loaded_space.spec.stage_skip
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    x = torch.nn.functional.interpolate(x, size=space.resolution(arch))
    with torch.no_grad():
        assert torch.allclose(child(x), net(x, arch), atol=1e-5)


@pytest.mark.parametrize("bn_layout", ["private", "shared"])
def test_bn_indicator_scores_are_unchanged_by_the_shortcut(bn_layout):
    plain, skip = load_space("tiny"), with_stage_skip(load_space("tiny"))
    nets = [build_supernet(s, 10, bn_layout=bn_layout) for s in (plain, skip)]
    for net in nets:
        randomise(net, seed=7, convs=False)  # the shortcut adds no BN: both nets draw the same BN values
    archs = [plain.sample(random.Random(i)) for i in range(50)]
    scores = [BNIndicator().fit(net).score(archs) for net in nets]
    assert scores[0].tolist() == scores[1].tolist()
    at_init = [BNIndicator().fit(build_supernet(s, 10, bn_layout=bn_layout)).score(archs) for s in (plain, skip)]
    assert at_init[0].tolist() == at_init[1].tolist()
