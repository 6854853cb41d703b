"""The test split's read ledger: one read per final model over every attempt of a run, counted."""

import json

import pytest
import torch

from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.protocol.final import TestSplit
from raynas.space import load_space


@pytest.fixture(scope="module")
def child():
    data = load_data("synthetic", seed=0)
    space = load_space("tiny")
    from raynas.supernet import build_supernet

    torch.manual_seed(0)
    supernet = build_supernet(space, num_classes=data.num_classes, in_channels=data.channels)
    arch = space.min()
    return data, supernet.export(arch).eval(), space.resolution(arch)


def test_a_recorded_figure_is_reused_by_a_later_attempt_and_not_read_again(child, tmp_path):
    data, model, resolution = child
    ledger = tmp_path / "test_reads.json"
    first = TestSplit(data, ledger=ledger)
    accuracy = first.top1(model, "1:a", resolution)
    with pytest.raises(ConfigError, match="already read for 1:a"):  # twice in one attempt: a caller's bug
        first.top1(model, "1:a", resolution)
    again = TestSplit(data, ledger=ledger)
    assert again.top1(model, "1:a", resolution) == accuracy and again.reads == ["1:a"]
    assert json.loads(ledger.read_text())["reads"] == [{"model": "1:a", "accuracy": accuracy}]


def test_a_read_a_crash_interrupted_counts_and_is_made_again(child, tmp_path):
    data, model, resolution = child
    ledger = tmp_path / "test_reads.json"
    ledger.write_text(json.dumps({"reads": [{"model": "1:a", "accuracy": None}]}))  # killed while reading
    split = TestSplit(data, ledger=ledger)
    accuracy = split.top1(model, "1:a", resolution)
    assert split.reads == ["1:a", "1:a"]
    assert json.loads(ledger.read_text())["reads"][-1] == {"model": "1:a", "accuracy": accuracy}


def test_a_corrupt_ledger_is_named_and_kept(child, tmp_path):
    data, _, _ = child
    ledger = tmp_path / "test_reads.json"
    ledger.write_text("{not json")
    with pytest.raises(ConfigError, match=r"test_reads.json is not a test-read ledger raynas wrote"):
        TestSplit(data, ledger=ledger)
    assert ledger.read_text() == "{not json"
