"""Exported children equal the supernet with that child active, and cost what the model says."""

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from raynas.cost import CostModel
from raynas.space import load_space, shipped_spaces
from raynas.supernet import BATCHNORMS, build_supernet, load_child, save_child
from raynas.supernet.mobilenet import BN_LAYOUTS

# Input size for the equality check; large spaces run at a reduced resolution to keep the test fast.
TEST_RESOLUTION = {"bignas_imagenet": 48, "ofa_mbv3": 48}
NUM_ARCHS = 50
WORST_DIFF: dict[str, float] = {}


def randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, BATCHNORMS):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.5 + (1.0 if t is m.weight else 0.0))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.fixture(scope="module")
def cifar_net():
    net = build_supernet(load_space("mbv3_cifar"), 10)
    randomise_bn(net)
    return net.eval()


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
def test_export_matches_supernet_and_cost_model(name):
    space = load_space(name)
    net = build_supernet(space, num_classes=10, seed=1)
    randomise_bn(net, seed=2)
    net.eval()
    cost = CostModel(space, num_classes=10, in_channels=3)
    rng = random.Random(0)
    archs = [space.max(), space.min()] + [space.sample(rng) for _ in range(NUM_ARCHS - 2)]
    params = cost.params(archs)
    worst = 0.0
    for arch, expected_params in zip(archs, params):
        size = TEST_RESOLUTION.get(name, space.resolution(arch))
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
        child = net.export(arch)
        assert not child.training
        assert not any(type(m).__module__.endswith("elastic") for m in child.modules())
        with torch.no_grad():
            worst = max(worst, (net(x, arch) - child(x)).abs().max().item())
        assert sum(p.numel() for p in child.parameters()) == expected_params
    WORST_DIFF[name] = worst
    assert worst <= 1e-5, f"{name}: max abs diff {worst}"


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
def test_cost_model_equals_flop_counter(name):
    space = load_space(name)
    net = build_supernet(space, num_classes=10)
    cost = CostModel(space, num_classes=10)
    rng = random.Random(5)
    archs = [space.max(), space.min()] + [space.sample(rng) for _ in range(3)]
    for arch, macs in zip(archs, cost.flops(archs)):
        size = space.resolution(arch)
        child = net.export(arch).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            child(torch.zeros(1, 3, size, size))
        assert counter.get_total_flops() == 2 * macs, space.key(arch)


def test_cost_model_handles_other_inputs_and_classes():
    space = load_space("tiny")
    net = build_supernet(space, num_classes=7, in_channels=1)
    arch = space.sample(3)
    child = net.export(arch).eval()
    expected = CostModel(space, num_classes=7, in_channels=1).of(arch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        child(torch.zeros(1, 1, arch["resolution"], arch["resolution"]))
    assert counter.get_total_flops() == 2 * expected["flops"]
    assert sum(p.numel() for p in child.parameters()) == expected["params"]


@pytest.mark.parametrize("name", ["tiny", "nb201"])
def test_saved_child_reloads_with_same_outputs(tmp_path, name):
    space = load_space(name)
    net = build_supernet(space, num_classes=10, seed=4)
    randomise_bn(net)
    net.eval()
    arch = space.sample(11)
    save_child(net, arch, tmp_path / "child")
    child, loaded_arch, loaded_space = load_child(tmp_path / "child")
    assert loaded_arch == arch and loaded_space.name == space.name
    size = space.resolution(arch)
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        assert torch.equal(child(x), net.export(arch).eval()(x))


@pytest.mark.parametrize("layout", sorted(BN_LAYOUTS))
def test_every_bn_layout_exports_exactly(layout):
    space = load_space("tiny")
    net = build_supernet(space, 10, bn_layout=layout)
    randomise_bn(net, seed=9)
    net.eval()
    rng = random.Random(1)
    for _ in range(10):
        arch = space.sample(rng)
        x = torch.randn(2, 3, arch["resolution"], arch["resolution"])
        with torch.no_grad():
            assert (net(x, arch) - net.export(arch)(x)).abs().max() <= 1e-5


def test_private_layout_gives_kernel_choices_their_own_bn():
    space = load_space("tiny")
    shared, private = build_supernet(space, 10, bn_layout="shared"), build_supernet(space, 10, bn_layout="private")
    bn_shared = shared.stages[0][0].project.bn
    bn_private = private.stages[0][0].project.bn
    assert bn_shared.slots == 1 and bn_private.slots == len(space.dim("s0_b0_kernel").choices) * 2


def test_active_child_is_scoped_and_restored(cifar_net):
    space = cifar_net.space
    arch = space.min()
    with pytest.raises(RuntimeError, match="no active child"):
        cifar_net(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError):
        with cifar_net.activated(arch):
            raise ValueError("boom")
    assert cifar_net.stem.conv.out_channels == space.max()["stem_width"]
    with cifar_net.activated(arch):
        with pytest.raises(RuntimeError, match="already active"):
            with cifar_net.activated(space.max()):
                pass
