"""The pure sandwich step and the training modes, without Ray."""

import pytest
import torch

from raynas.data import load_data, to_model_input
from raynas.errors import ConfigError, TrainingError
from raynas.model_record import DataInfo, ModelRecord
from raynas.space import load_space
from raynas.supernet import BATCHNORMS, build_supernet
from raynas.supernet.mobilenet import with_stage_skip
from raynas.train import TrainConfig, sandwich_members, sandwich_step
from raynas.train.config import bignas_recipe
from raynas.train.loop import build_model
from raynas.train.modes import configure_trainable, lr_factor, make_optimizer, zero_init_residual_gamma


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def run_steps(config, data, steps=4, space_name="tiny", space=None):
    space = space or load_space(space_name)
    net = build_supernet(space, data.num_classes, data.channels, seed=config.seed, bn_layout=config.bn_layout)
    if config.mode == "full":
        zero_init_residual_gamma(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    configure_trainable(net, config)
    optimizer = make_optimizer(net, config)
    to_input = lambda x, r: to_model_input(x, data.mean, data.std, r)  # noqa: E731
    history = []
    for step in range(steps):
        members = sandwich_members(space, config.seed, step, config.num_random, config.sampling)
        batch = (data.train.images[step * 32:(step + 1) * 32], data.train.labels[step * 32:(step + 1) * 32])
        history.append(sandwich_step(net, members, [batch], to_input, optimizer, config, step, space.key))
    return net, before, history


def test_members_follow_the_sandwich_rule_and_are_seeded():
    space = load_space("tiny")
    members = sandwich_members(space, seed=3, step=7, num_random=2)
    assert [m.role for m in members] == ["max", "min", "random_0", "random_1"]
    assert members[0].arch == space.max() and members[1].arch == space.min()
    assert members == sandwich_members(space, seed=3, step=7, num_random=2)
    assert members[2:] != sandwich_members(space, seed=3, step=8, num_random=2)[2:]
    assert len(sandwich_members(space, 0, 0, num_random=5)) == 7


def test_uniform_sampling_trains_random_children_on_the_labels(digits):
    space = load_space("tiny")
    members = sandwich_members(space, seed=3, step=7, num_random=2, sampling="uniform")
    assert members == sandwich_members(space, seed=3, step=7, num_random=2)[2:]
    config = TrainConfig(sampling="uniform", num_random=2, lr=1e-9)
    net = build_supernet(space, digits.num_classes, digits.channels, seed=0)
    net.eval()  # fixed BN statistics: the step's loss can be recomputed exactly
    images, labels = digits.train.images[:32], digits.train.labels[:32]
    to_input = lambda x, r: to_model_input(x, digits.mean, digits.std, r)  # noqa: E731
    with torch.no_grad():
        expected = {m.role: float(torch.nn.functional.cross_entropy(
            net(to_input(images, int(m.arch["resolution"])), m.arch), labels)) for m in members}
    losses = sandwich_step(net, members, [(images, labels)], to_input, make_optimizer(net, config), config, 0)
    assert losses == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="num_random must be >= 1"):
        TrainConfig(sampling="uniform", num_random=0)


def test_step_returns_each_members_loss(digits):
    _, _, history = run_steps(TrainConfig(num_random=3), digits, steps=2)
    assert set(history[0]) == {"max", "min", "random_0", "random_1", "random_2"}
    assert all(v >= 0 for h in history for v in h.values())


def test_bn_only_leaves_every_non_bn_parameter_bitwise_unchanged(digits):
    net, before, _ = run_steps(TrainConfig(mode="bn_only", lr=0.5), digits)
    bn_names = {f"{name}.{p}" for name, m in net.named_modules() if isinstance(m, BATCHNORMS) for p in ("weight", "bias")}
    changed_bn = 0
    for name, param in net.named_parameters():
        if name in bn_names:
            changed_bn += not torch.equal(param, before[name])
        else:
            assert torch.equal(param, before[name]), f"{name} changed in bn_only mode"
    assert changed_bn > 0


def test_full_mode_changes_every_parameter(digits):
    net, before, _ = run_steps(TrainConfig(mode="full", num_random=4, lr=0.1), digits, steps=12)
    unchanged = [n for n, p in net.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_full_mode_zero_inits_residual_gammas_and_bn_only_starts_at_one():
    net = build_supernet(load_space("tiny"), 10)
    assert all(float(m.weight.detach().min()) == 1.0 for m in net.modules() if isinstance(m, BATCHNORMS))
    assert zero_init_residual_gamma(net) == 2
    assert float(net.stages[0][1].project.bn.weight.detach().abs().max()) == 0.0


def test_stage_skip_makes_every_first_block_residual_and_zero_inits_it():
    net = build_supernet(with_stage_skip(load_space("tiny")), 10)
    assert zero_init_residual_gamma(net) == 4
    assert all(float(block.project.bn.weight.detach().abs().max()) == 0.0 for stage in net.stages for block in stage)


@pytest.mark.parametrize("stage_skip", [False, True])
def test_the_training_loop_zero_inits_in_full_mode_only(stage_skip):
    space = with_stage_skip(load_space("tiny"), stage_skip)
    digits = DataInfo("digits", num_classes=10, in_channels=1, image_size=8, mean=(0.3,), std=(0.4,), hflip=False)
    loop_config = {"model": ModelRecord.of(space, digits, TrainConfig().bn_layout)}
    gammas = {}
    for mode in ("bn_only", "full"):
        model, _ = build_model(loop_config, TrainConfig(mode=mode))
        gammas[mode] = [float(b.project.bn.weight.detach().abs().max()) for stage in model.stages for b in stage]
    assert gammas["bn_only"] == [1.0] * 4
    assert gammas["full"] == ([0.0] * 4 if stage_skip else [1.0, 0.0, 1.0, 0.0])


def test_full_mode_with_stage_skip_trains_the_shortcuts(digits):
    space = with_stage_skip(load_space("tiny"))
    net, before, _ = run_steps(bignas_recipe(1, lr=0.1), digits, steps=3, space=space)
    shortcut = {n: p for n, p in net.named_parameters() if "shortcut" in n}
    assert sorted(shortcut) == ["stages.0.0.shortcut.conv.weight", "stages.1.0.shortcut.conv.weight"]
    assert not any(torch.equal(p, before[n]) for n, p in shortcut.items())


def test_bignas_recipe_defaults_and_overrides():
    config = bignas_recipe(30)
    assert (config.mode, config.sampling, config.num_random, config.bn_layout) == ("full", "sandwich", 2, "shared")
    assert (config.schedule, config.final_lr_fraction) == ("exp_decay_const", 0.05)
    assert (config.weight_decay, config.lr, config.label_smoothing) == (1e-5, 0.4, 0.0)
    assert config.warmup_epochs == pytest.approx(1.5)
    steps = 100  # per epoch
    floor_step = int((config.warmup_epochs + 2 / 3 * (config.epochs - config.warmup_epochs)) * steps)
    assert lr_factor(floor_step - 50, steps, config) > 0.05
    assert lr_factor(floor_step + 1, steps, config) == pytest.approx(0.05)
    assert lr_factor(30 * steps - 1, steps, config) == pytest.approx(0.05)
    assert bignas_recipe(400).warmup_epochs == 5.0
    assert bignas_recipe(10, batch_size=128).batch_size == 128
    assert bignas_recipe(10, lr=0.05, train_images=256).lr == 0.05
    with pytest.raises(ConfigError, match=r"unknown training config key\(s\) \['dropout'\]"):
        bignas_recipe(10, dropout=0.2)
    with pytest.raises(ConfigError, match="epochs must be >= 1, got 0"):
        bignas_recipe(0)


def test_trainable_classifier_option(digits):
    net = build_supernet(load_space("tiny"), 10)
    frozen = configure_trainable(net, TrainConfig(mode="bn_only"))
    trainable = configure_trainable(net, TrainConfig(mode="bn_only", classifier="trainable"))
    assert len(trainable) == len(frozen) + 2 and net.head.classifier.weight.requires_grad


def test_non_finite_loss_names_step_and_child(digits):
    space = load_space("tiny")
    config = TrainConfig()
    net = build_supernet(space, 10, 1)
    next(m for m in net.modules() if isinstance(m, BATCHNORMS)).weight.data.fill_(float("inf"))
    optimizer = make_optimizer(net, config)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    members = sandwich_members(space, 0, 5, 2)
    batch = (digits.train.images[:8], digits.train.labels[:8])
    with pytest.raises(TrainingError, match=r"non-finite loss .* at step 5 for child r16-s12-.* \(max\)"):
        sandwich_step(net, members, [batch], lambda x, r: to_model_input(x, digits.mean, digits.std, r),
                      optimizer, config, 5, space.key)
    assert all(torch.equal(v, before[k]) or not v.is_floating_point() for k, v in net.state_dict().items()
               if "running" not in k)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown training config key\(s\) \['lrr'\]; valid keys: \["):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(ConfigError, match=r"mode must be one of \['bn_only', 'full'\], got 'half'"):
        TrainConfig(mode="half")
    with pytest.raises(ConfigError, match=r"bn_layout must be one of \[.*'private_resolution'.*\], got 'per_pixel'"):
        TrainConfig(bn_layout="per_pixel")


def test_schedules():
    config = TrainConfig(epochs=10, warmup_epochs=1, schedule="exp_decay_const", decay_rate=0.5, final_lr_fraction=0.1)
    assert lr_factor(0, 10, config) == pytest.approx(0.1)
    assert lr_factor(10, 10, config) == pytest.approx(1.0)
    assert lr_factor(20, 10, config) == pytest.approx(0.5)
    assert lr_factor(90, 10, config) == pytest.approx(0.1)  # constant ending
    cosine = TrainConfig(epochs=4)
    assert lr_factor(0, 10, cosine) == 1.0 and lr_factor(40, 10, cosine) == pytest.approx(0.0)
