"""Optuna samplers by name. Each owns its generator, seeded from the search seed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import optuna

from raynas.errors import ConfigError

SamplerFactory = Callable[[int, int], optuna.samplers.BaseSampler]
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


class _PicklableLocks:
    """Pickles a sampler that holds a thread lock: the lock is left out and a fresh one made on load.

    Optuna 5.1's genetic samplers keep a ``threading.Lock`` (``_thread_lock``), which cannot be
    pickled, yet Ray Tune pickles its searcher, sampler included, to ship and checkpoint it. A
    lock guards only the process that holds it, so a new one is all the copy needs.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        locks = [name for name, value in state.items() if isinstance(value, _LOCK_TYPES)]
        for name in locks:
            state[name] = isinstance(state[name], type(threading.RLock()))
        state["_raynas_locks"] = locks
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for name in state.pop("_raynas_locks", []):
            state[name] = threading.RLock() if state[name] else threading.Lock()
        self.__dict__.update(state)


class NSGAIISampler(_PicklableLocks, optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable on every Optuna 5 release."""


class NSGAIIISampler(_PicklableLocks, optuna.samplers.NSGAIIISampler):
    """Optuna's NSGA-III, picklable on every Optuna 5 release."""


SAMPLERS: dict[str, SamplerFactory] = {
    "nsga2": lambda seed, population: NSGAIISampler(population_size=population, seed=seed),
    "nsga3": lambda seed, population: NSGAIIISampler(population_size=population, seed=seed),
    "tpe": lambda seed, population: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "gp": lambda seed, population: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed, population: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda seed, population: optuna.samplers.QMCSampler(seed=seed, qmc_type="halton", scramble=True),
}


def make_sampler(sampler: str | optuna.samplers.BaseSampler, seed: int, population: int = 50) -> optuna.samplers.BaseSampler:
    """A sampler from its name, or the user's own sampler object unchanged."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    check_sampler(sampler)
    return SAMPLERS[sampler](seed, population)


def check_sampler(sampler: str | optuna.samplers.BaseSampler) -> None:
    """Refuse an unknown sampler name when the search is configured, before any Ray start."""
    if not isinstance(sampler, optuna.samplers.BaseSampler) and sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; valid samplers: {sorted(SAMPLERS)} or an optuna sampler object")


def sampler_name(sampler: str | optuna.samplers.BaseSampler) -> str:
    return sampler if isinstance(sampler, str) else type(sampler).__name__
