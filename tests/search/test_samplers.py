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
