"""Resuming a run under other settings: refused with the keys that differ, unless it is the same run."""

from __future__ import annotations

import re

import pytest
import torch

from raynas.errors import ConfigError
from raynas.space import load_space
from raynas.train import TrainConfig, train_supernet
from raynas.train.checkpoint import read_meta, read_state
from tests.train.test_checkpoint_safety import Payload

CONFIG = TrainConfig(epochs=1, batch_size=64, lr=0.5, train_images=128, log_every_epoch=False)


@pytest.fixture(scope="module")
def one_epoch(ray_local, tmp_path_factory):
    """A finished 1-epoch cosine run, resumed by the tests below under other settings."""
    out = tmp_path_factory.mktemp("resume")
    return train_supernet(load_space("tiny"), "digits", CONFIG, out_dir=out, name="cos")


def test_more_epochs_of_a_cosine_schedule_are_refused_and_the_run_kept(one_epoch):
    with pytest.raises(ConfigError, match=r"run cos \(.*meta.json\) was trained with other settings than this call "
                                          r"asks for: epochs: 1 -> 3; the cosine schedule spreads over all epochs.*"
                                          r"resume with epochs=1"):
        train_supernet(load_space("tiny"), "digits", CONFIG.replace(epochs=3), out_dir=one_epoch.run_dir.parent,
                       name="cos")
    meta = read_meta(one_epoch.checkpoint)
    assert meta["epoch"] == 1 and meta["config"]["epochs"] == 1


def test_other_changes_are_refused_naming_each(one_epoch):
    with pytest.raises(ConfigError, match=r"batch_size: 64 -> 32; lr: 0.5 -> 0.25; the search space differs; "
                                          r"the data differs \(spec, num_classes, [a-z_, ]+\); resume "
                                          r"with the run's own settings"):
        train_supernet(load_space("nb201"), "synthetic", CONFIG.replace(lr=0.25, batch_size=32, log_every_epoch=True),
                       out_dir=one_epoch.run_dir.parent, name="cos")


def test_a_finished_run_run_again_returns_its_checkpoint(one_epoch, capsys):
    again = train_supernet(load_space("tiny"), "digits", CONFIG.replace(log_every_epoch=True),
                           out_dir=one_epoch.run_dir.parent, name="cos")
    assert again.checkpoint == one_epoch.checkpoint and again.metrics == one_epoch.metrics
    assert "[raynas] run cos already finished its 1 epochs" in capsys.readouterr().out


def test_more_epochs_of_a_constant_schedule_equal_the_longer_run(ray_local, tmp_path, capsys):
    constant = CONFIG.replace(schedule="constant", log_every_epoch=True)
    space = load_space("tiny")
    straight = train_supernet(space, "digits", constant.replace(epochs=2), out_dir=tmp_path, name="straight")
    train_supernet(space, "digits", constant, out_dir=tmp_path, name="extended")
    extended = train_supernet(space, "digits", constant.replace(epochs=2), out_dir=tmp_path, name="extended")
    assert "[raynas] resuming run extended from checkpoint epoch 1" in capsys.readouterr().out
    assert [m["epoch"] for m in extended.metrics] == [1, 2]
    assert read_meta(extended.checkpoint)["config"] == read_meta(straight.checkpoint)["config"]
    a, b = read_state(straight.checkpoint), read_state(extended.checkpoint)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_resuming_from_a_pickle_payload_is_refused_before_it_runs(ray_local, tmp_path):
    constant = CONFIG.replace(schedule="constant")
    first = train_supernet(load_space("tiny"), "digits", constant, out_dir=tmp_path, name="evil")
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker)}, first.checkpoint / "state.pt")
    refused = re.escape(f"{first.checkpoint / 'state.pt'} was refused: it asks to load io.open")
    with pytest.raises(ConfigError, match=refused):
        train_supernet(load_space("tiny"), "digits", constant.replace(epochs=2), out_dir=tmp_path, name="evil")
    assert not marker.exists()
