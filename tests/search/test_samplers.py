"""Every shipped sampler survives pickling (Ray Tune ships and checkpoints its searcher) and still samples."""

from __future__ import annotations

import pickle
import warnings

import optuna
import pytest

from raynas.search.samplers import SAMPLERS, make_sampler


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_round_trips_through_pickle_and_samples_like_the_original(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        original, copy = make_sampler(name, seed=3, population=4), pickle.loads(pickle.dumps(make_sampler(name, 3, 4)))
    assert type(copy) is type(original)
    picks = []
    for sampler in (original, copy):
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        study.optimize(lambda t: (t.suggest_int("x", 0, 9), t.suggest_categorical("y", [1, 2, 3])), n_trials=6)
        picks.append([t.params for t in study.trials])
        pickle.dumps(sampler)  # still picklable after use (its lock was taken and released)
    assert picks[0] == picks[1]


@pytest.mark.parametrize("sampler", [optuna.samplers.NSGAIISampler, optuna.samplers.NSGAIIISampler])
def test_optunas_own_sampler_objects_describe_and_identify_a_search(sampler):
    """``SearchConfig.describe`` (run.json) once deep-copied the sampler, and Optuna's own genetic
    samplers hold a thread lock that cannot be copied: a search crashed after training."""
    from raynas.model_record import DataInfo, ModelRecord
    from raynas.search.pool import PoolConfig, UntrainedSupernet
    from raynas.search.study import SearchConfig, search_identity
    from raynas.space import load_space

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        config = SearchConfig(sampler=sampler(population_size=4, seed=0))
    described = config.describe()
    assert described["sampler"] == sampler.__name__ and described["objectives"] == ["bn_score", "flops"]
    subject = UntrainedSupernet(ModelRecord.of(load_space("tiny"), DataInfo("", 10, 3, 32, (0.5,), (0.5,))))
    assert search_identity(config, subject, PoolConfig()).sampler == sampler.__name__
