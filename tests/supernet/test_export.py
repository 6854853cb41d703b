"""Exported children equal the supernet with that child active, and cost what the model says."""

import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from raynas.cost import CostModel
from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.model_record import DataInfo, ModelRecord
from raynas.space import load_space, shipped_spaces
from raynas.supernet import (
    BATCHNORMS,
    ChildRecord,
    Preprocessing,
    build_supernet,
    load_child,
    read_child_record,
    save_child,
)
from raynas.supernet.export import write_child
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


def data_for(net) -> DataInfo:
    """A data description that fits ``net``'s classes and channels: what saving one of its children needs."""
    channels = net.in_channels
    return DataInfo("synthetic", net.num_classes, channels, 16, (0.5,) * channels, (0.25,) * channels)


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
    save_child(net, arch, tmp_path / "child", data_for(net))
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


# --- the shipped folder (raynas-child/3) ------------------------------------------------------
DIGITS = DataInfo("digits", num_classes=10, in_channels=1, image_size=8, mean=(0.3,), std=(0.375,), hflip=False)


@pytest.fixture(scope="module")
def tiny_net():
    net = build_supernet(load_space("tiny"), num_classes=10, in_channels=1, seed=4)
    randomise_bn(net, seed=5)
    return net.eval()


def test_saved_child_with_data_is_a_complete_folder_that_matches_the_supernet(tiny_net, tmp_path):
    space = tiny_net.space
    arch = space.sample(7)
    out = save_child(tiny_net, arch, tmp_path / "child", data=DIGITS, metrics={"accuracy": 0.5, "split": "val"})
    assert {p.name for p in out.iterdir()} == {"arch.json", "weights.pt", "metrics.json", "model.ts", "model.pt2"}
    record = json.loads((out / "arch.json").read_text())
    assert record["format"] == "raynas-child/3" and record["arch"] == space.key(arch)
    assert set(record) == {"format", "model", "arch", "dims", "resolution", "preprocessing", "metrics", "files"}
    assert record["model"] == ModelRecord.of(space, DIGITS, "private").to_dict()  # classes, channels, space: once
    assert read_child_record(out).model == ModelRecord.of(space, DIGITS, "private")
    assert record["preprocessing"] == {"mean": [0.3], "std": [0.375], "resolution": arch["resolution"],
                                       "in_channels": 1, "interpolation": "bilinear", "antialias": True,
                                       "input_scale": "uint8/255"}
    assert record["metrics"] == json.loads((out / "metrics.json").read_text()) == {"accuracy": 0.5, "split": "val"}
    child, loaded_arch, _ = load_child(out)
    x = torch.randn(3, 1, arch["resolution"], arch["resolution"])
    with torch.no_grad(), tiny_net.activated(arch):
        assert loaded_arch == arch and torch.equal(child(x), tiny_net(x))


def test_rewriting_a_folder_replaces_the_child(tiny_net, tmp_path):
    space = tiny_net.space
    save_child(tiny_net, space.max(), tmp_path / "child", data=DIGITS)
    save_child(tiny_net, space.min(), tmp_path / "child", data=DIGITS)
    assert read_child_record(tmp_path / "child").arch == space.key(space.min())
    assert load_child(tmp_path / "child")[1] == space.min()


def test_saving_from_loaded_splits_records_their_description(tmp_path):
    data = load_data("synthetic", seed=0)
    net = build_supernet(load_space("tiny"), data.num_classes, data.channels, seed=2).eval()
    out = save_child(net, net.space.min(), tmp_path / "child", data)
    assert read_child_record(out).model.data == DataInfo.of(data)


def old_folder_loads(net, arch, folder, record: dict):
    """Write a child folder of an older format by hand (weights and ``record``); it loads to the same child."""
    folder.mkdir()
    torch.save(net.export(arch).state_dict(), folder / "weights.pt")
    (folder / "arch.json").write_text(json.dumps(record))
    child, loaded_arch, _ = load_child(folder)
    x = torch.randn(2, 1, arch["resolution"], arch["resolution"])
    with torch.no_grad():
        assert loaded_arch == arch and torch.equal(child(x), net(x, arch))
    return child


def test_version_1_folder_still_loads(tiny_net, tmp_path):
    space = tiny_net.space
    arch = space.sample(3)
    folder = tmp_path / "v1"
    old_folder_loads(tiny_net, arch, folder, {
        "format": "raynas-child/1", "space": space.definition, "space_name": space.name, "arch": space.key(arch),
        "dims": arch.to_dict(), "resolution": space.resolution(arch), "num_classes": 10, "in_channels": 1,
        "bn_layout": "private"})
    record = read_child_record(folder)
    assert record.format == "raynas-child/1" and record.preprocessing is None and record.metrics == {}
    assert record.model is None  # no data description: nothing to make a ModelRecord of


def version_2_record(space, arch) -> dict:
    """An arch.json as the raynas-child/2 exporter wrote it: the model's fields flat, beside the child's."""
    return {"format": "raynas-child/2", "space": space.definition, "space_name": space.name, "arch": space.key(arch),
            "dims": arch.to_dict(), "resolution": space.resolution(arch), "num_classes": 10, "in_channels": 1,
            "bn_layout": "private", "preprocessing": Preprocessing.of(DIGITS, space.resolution(arch)).to_dict(),
            "metrics": {"accuracy": 0.5}, "files": ["weights.pt", "metrics.json", "model.ts", "model.pt2"]}


def test_version_2_folder_still_loads(tiny_net, tmp_path):
    space = tiny_net.space
    arch = space.sample(4)
    folder = tmp_path / "v2"
    child = old_folder_loads(tiny_net, arch, folder, version_2_record(space, arch))
    record = read_child_record(folder)
    assert record.format == "raynas-child/2" and record.model is None and record.metrics == {"accuracy": 0.5}
    assert record.preprocessing == Preprocessing.of(DIGITS, arch["resolution"])
    with pytest.raises(ConfigError, match="a raynas-child/3 record needs the data the child was trained on"):
        write_child(tmp_path / "again", child, record)


def test_bad_child_folders_are_clear_errors(tiny_net, tmp_path):
    with pytest.raises(ConfigError, match="child folder .*missing.* does not exist"):
        load_child(tmp_path / "missing")
    with pytest.raises(ConfigError, match="is not a raynas child folder: arch.json is missing"):
        load_child(tmp_path)
    (tmp_path / "arch.json").write_text(json.dumps({"format": "raynas-child/9"}))
    rule = r"format must be one of \['raynas-child/1', 'raynas-child/2', 'raynas-child/3'\], got 'raynas-child/9'"
    with pytest.raises(ConfigError, match=rule):
        load_child(tmp_path)
    space = tiny_net.space
    record = ChildRecord.of(ModelRecord.of(space, DIGITS), space.min())
    with pytest.raises(ConfigError, match="weights must match the recorded architecture"):
        write_child(tmp_path / "wrong", tiny_net.export(space.max()), record)
    assert not (tmp_path / "wrong" / "arch.json").exists()
    with pytest.raises(ConfigError, match="metrics must be JSON-serialisable"):
        save_child(tiny_net, space.min(), tmp_path / "bad_metrics", DIGITS, metrics={"model": object()})
    with pytest.raises(ConfigError, match=r"one value per input channel \(1\), got mean=\[0.1, 0.2, 0.3\]"):
        save_child(tiny_net, space.min(), tmp_path / "x", data=DataInfo("d", 10, 1, 8, (0.1, 0.2, 0.3), (1, 1, 1)))


def test_a_hand_edited_version_3_record_is_a_clear_error(tiny_net, tmp_path):
    space = tiny_net.space
    out = save_child(tiny_net, space.min(), tmp_path / "child", DIGITS)
    values = json.loads((out / "arch.json").read_text())
    (out / "arch.json").write_text(json.dumps({**values, "preprocessing": {**values["preprocessing"], "mean": [0.5]}}))
    with pytest.raises(ConfigError, match=r"preprocessing must follow model.data and the resolution"):
        read_child_record(out)
    del values["model"]
    (out / "arch.json").write_text(json.dumps(values))
    with pytest.raises(ConfigError, match=r"a raynas-child/3 record needs the keys .*; missing \['model'\]"):
        read_child_record(out)
    (out / "arch.json").write_text(json.dumps({**values, "model": {**ModelRecord.of(space, DIGITS).to_dict(),
                                                                    "data": {"spec": "digits"}}}))
    with pytest.raises(ConfigError, match=r"model.data lacks key\(s\)"):
        read_child_record(out)
