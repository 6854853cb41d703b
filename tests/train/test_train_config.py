"""TrainConfig rejects values of the wrong type with the key, the expected type and the value; the speed options."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from raynas.cli.common import train_config
from raynas.cli.main import build_parser
from raynas.cli.train_cmd import speed_options
from raynas.data import load_data, to_model_input
from raynas.errors import ConfigError
from raynas.space import load_space
from raynas.supernet import build_supernet
from raynas.train import TrainConfig, sandwich_members, sandwich_step
from raynas.train.modes import configure_trainable, make_optimizer


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "five", "'epochs' must be an int, got 'five' (str)"),
    ("epochs", True, "'epochs' must be an int, got True (bool)"),
    ("epochs", 2.5, "'epochs' must be an int, got 2.5 (float)"),
    ("lr", [1], "'lr' must be a number, got [1] (list)"),
    ("lr", False, "'lr' must be a number, got False (bool)"),
    ("lr", "1e-3", "'lr' must be a number, got '1e-3' (str) (YAML reads a number like 1e-3 as text: write 1.0e-3)"),
    ("augment", "yes", "'augment' must be true or false, got 'yes' (str)"),
    ("augment", 1, "'augment' must be true or false, got 1 (int)"),
    ("mode", 3, "'mode' must be a string, got 3 (int)"),
    ("train_images", "all", "'train_images' must be an int or null, got 'all' (str)"),
])
def test_a_value_of_the_wrong_type_is_named(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(f"training config key {message}")):
        TrainConfig.from_dict({key: value})


def test_ints_are_floats_and_numpy_scalars_become_python_ones():
    config = TrainConfig.from_dict({"lr": 1, "epochs": np.int64(3), "weight_decay": np.float32(0.5),
                                    "train_images": None})
    assert config == TrainConfig(lr=1.0, epochs=3, weight_decay=0.5)
    assert type(config.lr) is float and type(config.epochs) is int and type(config.weight_decay) is float


@pytest.mark.parametrize("key, value, message", [
    ("amp", "fp16", "amp must be one of ['off', 'bf16'], got 'fp16'"),
    ("cutout", -2, "cutout must be >= 0, got -2"),
    ("grad_sync", "bucket", "grad_sync must be one of ['step', 'member'], got 'bucket'"),
    ("channels_last", "yes", "training config key 'channels_last' must be true or false, got 'yes' (str)"),
])
def test_speed_options_reject_bad_values(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.from_dict({key: value})


def test_a_config_saved_before_the_speed_options_loads_with_their_defaults():
    """Checkpoints written before amp, channels_last and grad_sync existed still resume unchanged."""
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in {"amp", "channels_last", "grad_sync"}}
    config = TrainConfig.from_dict(old)
    assert config == TrainConfig()
    assert (config.amp, config.channels_last, config.grad_sync) == ("off", False, "step")


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.mark.parametrize("mode", ["bn_only", "full"])
def test_bf16_autocast_and_channels_last_train_with_finite_losses(mode, digits):
    """On CPU too (slower there: both options are for GPUs), so that the path stays tested."""
    data = digits
    space, config = load_space("tiny"), TrainConfig(mode=mode, amp="bf16", channels_last=True, lr=0.1)
    net = build_supernet(space, data.num_classes, data.channels, seed=0).to(memory_format=torch.channels_last)
    configure_trainable(net, config)
    optimizer = make_optimizer(net, config)
    to_input = lambda x, r: to_model_input(x, data.mean, data.std, r)  # noqa: E731
    before = [p.detach().clone() for p in net.parameters() if p.requires_grad]
    for step in range(2):
        batch = (data.train.images[8 * step:8 * (step + 1)], data.train.labels[8 * step:8 * (step + 1)])
        losses = sandwich_step(net, sandwich_members(space, 0, step, 2), [batch], to_input, optimizer, config, step)
        assert all(math.isfinite(v) for v in losses.values()), losses
    after = [p for p in net.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in after)  # autocast computes in bf16, the weights stay float32
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_cli_speed_flags_become_config_keys_and_absent_ones_keep_the_config(tmp_path):
    parse = build_parser().parse_args
    args = parse(["train", "tiny", "--amp", "bf16", "--channels-last"])
    assert speed_options(args) == {"amp": "bf16", "channels_last": True}
    (tmp_path / "train.yaml").write_text("amp: bf16\nchannels_last: true\n")
    args = parse(["train", "tiny", "--config", str(tmp_path / "train.yaml")])
    config = train_config(args).replace(**speed_options(args))
    assert (config.amp, config.channels_last) == ("bf16", True)
    assert speed_options(parse(["run"])) == {}
