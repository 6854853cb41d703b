"""The model record: one typed description of a supernet, the same across every boundary."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raynas.checkpoint import META_FILE, MODEL_KEY, load_checkpoint, read_meta
from raynas.errors import ConfigError, SpaceError
from raynas.model_record import DataInfo, ModelRecord
from raynas.search.evaluator import Evaluator, state_to_numpy
from raynas.space import load_space
from raynas.supernet import build_supernet
from raynas.train import TrainConfig, train_supernet

DIGITS = DataInfo("digits", num_classes=10, in_channels=1, image_size=8, mean=(0.3,), std=(0.4,), hflip=False)
CIFAR = DataInfo("cifar10", num_classes=10, in_channels=3, image_size=32, mean=(0.49, 0.48, 0.45),
                 std=(0.25, 0.24, 0.26))
RECORDS = {"tiny": ModelRecord.of(load_space("tiny"), DIGITS, "shared"),
           "nb201": ModelRecord.of(load_space("nb201"), CIFAR)}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_record_round_trips_through_json(name):
    record = RECORDS[name]
    again = ModelRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record and again.to_dict() == record.to_dict()
    assert again.space == load_space(name) and again.space is again.space  # parsed once


def test_a_record_without_hflip_reads_with_the_default():
    values = RECORDS["tiny"].to_dict()
    del values["data"]["hflip"]
    assert ModelRecord.from_dict(values).data.hflip is True


@pytest.mark.parametrize(("change", "message"), [
    (lambda v: v.pop("bn_layout"), r"model lacks key\(s\) \['bn_layout'\]"),
    (lambda v: v["data"].pop("num_classes"), r"model.data lacks key\(s\) \['num_classes'\]"),
    (lambda v: v["data"].update(num_classes="10"), r"model.data.num_classes must be int, got '10'"),
    (lambda v: v["data"].update(in_channels=True), r"model.data.in_channels must be int, got True"),
    (lambda v: v.update(space=[1]), r"model.space must be Mapping, got \[1\]"),
    (lambda v: v.update(data=None), r"model.data must be Mapping, got None"),
])
def test_from_dict_names_the_missing_or_bad_key(change, message):
    values = RECORDS["tiny"].to_dict()
    change(values)
    with pytest.raises(ConfigError, match=rf"meta.json: {message}"):
        ModelRecord.from_dict(values, source="meta.json")


def test_from_dict_refuses_what_is_not_a_mapping():
    with pytest.raises(ConfigError, match="model must be a mapping, got list"):
        ModelRecord.from_dict([])


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_build_gives_the_supernet_build_supernet_gives(name):
    record = ModelRecord.from_dict(RECORDS[name].to_dict())
    built = record.build(seed=3).state_dict()
    expected = build_supernet(load_space(name), record.num_classes, record.in_channels, seed=3,
                              bn_layout=record.bn_layout).state_dict()
    assert list(built) == list(expected)
    assert all(torch.equal(built[k], expected[k]) for k in expected)


def test_the_record_and_the_space_import_without_torch():
    code = "import sys, raynas.model_record; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory) -> tuple[Path, TrainConfig]:
    config = TrainConfig(epochs=1, train_images=256, log_every_epoch=False)
    result = train_supernet(load_space("tiny"), "digits", config, out_dir=tmp_path_factory.mktemp("r"), name="r")
    return result.checkpoint, config


def test_a_checkpoint_writes_the_record_under_one_key(trained):
    meta = read_meta(trained[0])
    assert {"space", "space_name", "data"}.isdisjoint(meta)
    record = ModelRecord.from_dict(meta[MODEL_KEY])
    assert record.space == load_space("tiny") and record.bn_layout == trained[1].bn_layout
    assert load_checkpoint(trained[0]).model == record


def test_reading_a_checkpoint_loads_no_training_machinery(trained):
    """A search reads checkpoints without the training layer's Ray Train loop (issue 14, point 2)."""
    code = ("import sys; from raynas.checkpoint import load_checkpoint; import raynas.search.study; "
            f"loaded = load_checkpoint({str(trained[0])!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('raynas.train')), loaded.epoch)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("] ")[0] + "]" == "['raynas.train', 'raynas.train.config']", out


def old_style(checkpoint: Path, out: Path) -> Path:
    """A copy of ``checkpoint`` whose meta.json has the flat shape written before the record."""
    run = out / "old"
    folder = run / checkpoint.name
    shutil.copytree(checkpoint, folder)
    meta = read_meta(folder)
    record = meta.pop(MODEL_KEY)
    meta.update(space=record["space"], space_name=record["space_name"], data=record["data"])
    (folder / META_FILE).write_text(json.dumps(meta))
    return folder


def test_an_old_style_checkpoint_still_loads_resumes_and_evaluates(trained, tmp_path):
    new = load_checkpoint(trained[0])
    folder = old_style(trained[0], tmp_path)
    old = load_checkpoint(folder)
    assert old.model == new.model and old.space == new.space and old.data == new.data
    assert all(torch.equal(v, new.supernet.state_dict()[k]) for k, v in old.supernet.state_dict().items())
    again = train_supernet(load_space("tiny"), "digits", trained[1], out_dir=tmp_path, name="old")
    assert again.checkpoint == folder  # finished run: its old meta.json was read and matched
    evaluator = Evaluator({"weights": state_to_numpy(old.supernet.state_dict()), "data": None}, old.model)
    archs = [old.space.min().to_dict(), old.space.max().to_dict()]
    scores = Evaluator({"weights": state_to_numpy(new.supernet.state_dict()), "data": None}, new.model).score(archs)
    assert [r["bn_score"] for r in evaluator.score(archs)] == [r["bn_score"] for r in scores]


def test_a_bad_space_definition_is_named_by_its_source():
    values = RECORDS["tiny"].to_dict()
    values["space"] = {**values["space"], "family": "nope"}
    with pytest.raises(SpaceError, match="meta.json"):
        ModelRecord.from_dict(values, source="meta.json")
