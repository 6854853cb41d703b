"""Training through Ray Train in local mode (num_workers=0): checkpoints, resume, failures."""

import pytest
import torch

from raynas.errors import ConfigError, TrainingError
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet
from raynas.train.checkpoint import read_meta, read_state

CONFIG = TrainConfig(epochs=2, batch_size=64, lr=0.5, train_images=512, log_every_epoch=False)


def test_checkpoint_holds_everything_and_loads(ray_local, tmp_path):
    space = load_space("tiny")
    result = train_supernet(space, "digits", CONFIG, out_dir=tmp_path, name="ckpt")
    assert [m["epoch"] for m in result.metrics] == [1, 2]
    metrics = result.metrics[-1]
    for key in ("loss_max", "loss_min", "loss_random_0", "loss_random_1", "images_per_s", "epoch_seconds"):
        assert metrics[key] > 0
    state = read_state(result.checkpoint)
    assert {"model", "optimizer", "scheduler", "torch_rng", "step", "epoch"} <= set(state)
    loaded = load_checkpoint(result.checkpoint)
    assert loaded.space == space and loaded.config == CONFIG and loaded.epoch == 2
    assert loaded.data.num_classes == 10 and loaded.data.in_channels == 1
    assert torch.equal(loaded.supernet.state_dict()["stem.bn.weight"], state["model"]["stem.bn.weight"])


def test_resumed_run_ends_with_the_same_weights(ray_local, tmp_path):
    space = load_space("tiny")
    full = train_supernet(space, "digits", CONFIG, out_dir=tmp_path, name="straight")
    with pytest.raises(TrainingError, match="injected failure after epoch 1"):
        train_supernet(space, "digits", CONFIG, out_dir=tmp_path, name="interrupted",
                       fault={"kind": "raise", "after_epoch": 1, "marker": str(tmp_path / "marker")})
    resumed = train_supernet(space, "digits", CONFIG, out_dir=tmp_path, name="interrupted")
    assert [m["epoch"] for m in resumed.metrics] == [1, 2]
    a, b = read_state(full.checkpoint)["model"], read_state(resumed.checkpoint)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_starts_from_the_newest_checkpoint_on_disk_when_ray_knows_an_older_one(ray_local, tmp_path):
    space, config = load_space("tiny"), CONFIG.replace(epochs=3)
    with pytest.raises(TrainingError, match="injected failure after epoch 2"):
        train_supernet(space, "digits", config, Scaling(num_workers=1), out_dir=tmp_path, name="lagging",
                       fault={"kind": "raise", "after_epoch": 2, "marker": str(tmp_path / "marker")})
    (tmp_path / "lagging" / "checkpoint_manager_snapshot.json").unlink()  # Ray's record lags: it knows none
    resumed = train_supernet(space, "digits", config, Scaling(num_workers=1), out_dir=tmp_path, name="lagging")
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3]
    epochs = sorted(read_meta(p.parent)["epoch"] for p in (tmp_path / "lagging").glob("checkpoint_*/meta.json"))
    assert epochs == [1, 2, 3]  # epochs 1 and 2 were not trained again into duplicate folders


def test_nan_loss_stops_with_step_and_child_and_keeps_last_checkpoint(ray_local, tmp_path):
    space = load_space("tiny")
    steps_per_epoch = 512 // 64
    with pytest.raises(TrainingError, match=r"non-finite loss nan at step 10 for child r16-.*last good checkpoint: .*checkpoint_epoch_0001"):
        train_supernet(space, "digits", CONFIG, out_dir=tmp_path, name="nan",
                       fault={"kind": "nan", "at_step": steps_per_epoch + 2})
    kept = load_checkpoint(tmp_path / "nan" / "checkpoint_epoch_0001")
    assert kept.epoch == 1
    assert all(torch.isfinite(v).all() for v in kept.supernet.state_dict().values() if v.is_floating_point())


def test_more_workers_than_cpus_is_a_clear_error(ray_local, tmp_path):
    with pytest.raises(ConfigError, match=r"8 workers x 1 CPU need 8 CPUs, but the Ray cluster has 2"):
        train_supernet(load_space("tiny"), "digits", CONFIG, Scaling(num_workers=8), out_dir=tmp_path)
