"""Fixtures shared by the search tests: a briefly trained tiny supernet and one evaluator actor."""

import pytest

from raynas.data import load_data
from raynas.estimate.calibration import CalibrationConfig
from raynas.search import EvaluatorPool, PoolConfig
from raynas.space import load_space
from raynas.train import TrainConfig, load_checkpoint, train_supernet


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory):
    config = TrainConfig(epochs=1, train_images=256, log_every_epoch=False)
    result = train_supernet(load_space("tiny"), "digits", config, out_dir=tmp_path_factory.mktemp("s"), name="s")
    return load_checkpoint(result.checkpoint)


@pytest.fixture(scope="module")
def pool(trained):
    with EvaluatorPool(trained, load_data("digits"), PoolConfig(num_actors=1, num_cpus=0.5,
                                                                calibration=CalibrationConfig(images=64))) as p:
        yield p
