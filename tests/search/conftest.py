"""Fixtures shared by the search tests: a briefly trained tiny supernet and one evaluator actor."""

import random

import optuna
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


class RepeatingSampler(optuna.samplers.BaseSampler):
    """Proposes only ``k`` distinct architectures: trial n gets the one of ``n % k`` (a seeded draw)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        choices = param_distribution.choices
        return choices[random.Random(f"{trial.number % self.k}:{param_name}").randrange(len(choices))]


@pytest.fixture
def repeating_sampler():
    """A factory of samplers that propose repeats, in batches and across them."""
    return RepeatingSampler
