"""BN calibration: cumulative averages over a fixed seeded subset, per resolution, reproducible."""

import pytest
import torch

from raynas.data import load_data, to_model_input
from raynas.estimate.calibration import (
    CalibrationConfig,
    calibrate_and_evaluate,
    calibrate_bn,
    calibration_subset,
)
from raynas.space import load_space
from raynas.supernet import build_supernet


@pytest.fixture(scope="module")
def setup():
    data = load_data("synthetic")
    space = load_space("tiny")
    return space, build_supernet(space, data.num_classes, data.channels), data


def test_same_seed_same_result_and_n_is_recorded(setup):
    space, net, data = setup
    config = CalibrationConfig(images=64, batch_size=16)
    arch = space.sample(4)
    first = calibrate_and_evaluate(net, arch, data.calib, data.val, data.mean, data.std, config)
    calibrate_and_evaluate(net, space.max(), data.calib, data.val, data.mean, data.std, config)
    again = calibrate_and_evaluate(net, arch, data.calib, data.val, data.mean, data.std, config)
    assert first["calib_images"] == 30 == len(data.calib)  # capped at the calibration split
    for key in ("accuracy", "top5", "loss"):
        assert first[key] == again[key]


def test_subset_is_fixed_by_seed():
    data = load_data("digits")
    a = calibration_subset(data.calib, CalibrationConfig(images=50, seed=1))
    b = calibration_subset(data.calib, CalibrationConfig(images=50, seed=1))
    c = calibration_subset(data.calib, CalibrationConfig(images=50, seed=2))
    assert torch.equal(a.ids, b.ids) and not torch.equal(a.ids, c.ids) and len(a) == 50


def test_statistics_are_a_cumulative_average_not_an_ema(setup):
    space, net, data = setup
    arch = space.max()
    images = data.train.images[:40]
    calibrate_bn(net, arch, images, data.mean, data.std, batch_size=40)
    one_batch = net.stem.bn.running_mean.clone()
    calibrate_bn(net, arch, images, data.mean, data.std, batch_size=10)  # 4 equal batches
    assert torch.allclose(net.stem.bn.running_mean, one_batch, atol=1e-5)
    assert int(net.stem.bn.num_batches_tracked[0]) == 4
    assert net.stem.bn.momentum == 0.1  # restored after calibration


def test_calibration_runs_at_the_childs_resolution(setup):
    space, net, data = setup
    small = space.arch(space.max().to_dict() | {"resolution": 12})
    calibrate_bn(net, small, data.calib.images[:32], data.mean, data.std, 32)
    stats_small = net.stem.bn.running_var.clone()
    calibrate_bn(net, space.max(), data.calib.images[:32], data.mean, data.std, 32)
    assert not torch.allclose(stats_small, net.stem.bn.running_var)
    x = to_model_input(data.calib.images[:32], data.mean, data.std, 16)
    with torch.no_grad():
        feats = net.stem.conv.to(torch.float32)(x)  # stem conv is at max width here
    assert torch.allclose(net.stem.bn.running_mean[0, : feats.shape[1]], feats.mean((0, 2, 3)), atol=1e-4)
