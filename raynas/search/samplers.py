"""Optuna samplers by name. Each owns its generator, seeded from the search seed."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from raynas.errors import ConfigError

SamplerFactory = Callable[[int, int], optuna.samplers.BaseSampler]

SAMPLERS: dict[str, SamplerFactory] = {
    "nsga2": lambda seed, population: optuna.samplers.NSGAIISampler(population_size=population, seed=seed),
    "nsga3": lambda seed, population: optuna.samplers.NSGAIIISampler(population_size=population, seed=seed),
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
