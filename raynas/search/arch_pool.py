"""Search among a given pool of architectures (``raynas search --pool FILE``).

A user with a shortlist, or a benchmark with a table of known cells, wants the sampler's search
but only over those cells. ``ArchPoolSampler`` wraps any Optuna sampler: the wrapped sampler
proposes a whole architecture, and the trial takes the pool member nearest to it (fewest
dimensions that differ; ties broken by the seeded generator) that no trial has taken yet. So a
genetic sampler's crossover and mutation still steer, and no cell is evaluated twice until the
pool is used up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from raynas.errors import ArchError, ConfigError
from raynas.space import SearchSpace

Params = dict[str, object]
"""An architecture as Optuna parameters: dimension name -> choice."""


def pool_digest(keys: Sequence[str]) -> dict[str, int | str]:
    """What identifies a pool in ``run.json``: its size and a digest of its sorted keys."""
    return {"archs": len(keys), "sha1": hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:16]}


class ArchPoolSampler(optuna.samplers.BaseSampler):
    """``base``'s proposals, each snapped to the nearest pool member not taken yet."""

    def __init__(self, base: optuna.samplers.BaseSampler, space: SearchSpace, keys: Sequence[str], seed: int = 0) -> None:
        if not keys:
            raise ConfigError("the architecture pool is empty")
        self.base, self.space = base, space
        self.keys = list(dict.fromkeys(keys))
        self.matrix = space.index_matrix([space.arch(k) for k in self.keys])
        self.taken = np.zeros(len(self.keys), dtype=bool)
        self._row = {k: i for i, k in enumerate(self.keys)}
        self._rng = np.random.default_rng(seed)
        self._seen_trials = 0

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {d.name: CategoricalDistribution(list(d.choices)) for d in self.space.dims}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> Params:
        self._mark_study(study)
        proposal = dict(self.base.sample_relative(study, trial, self.base.infer_relative_search_space(study, trial)))
        for name, distribution in search_space.items():
            if name not in proposal:
                proposal[name] = self.base.sample_independent(study, trial, name, distribution)
        row = self._nearest(self.space.index_matrix([self.space.arch(self._active(proposal))])[0])
        self.taken[row] = True
        chosen: Params = dict(self.space.arch(self.keys[row]).to_dict())
        return chosen

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> object:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: optuna.trial.TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    # --- helpers ------------------------------------------------------------------------------
    def _active(self, values: Params) -> Params:
        """The proposal's values of the dimensions active under it (a conditional space drops the rest)."""
        active: Params = {}
        for dim in self.space.dims:
            if dim.is_active(active):
                active[dim.name] = values[dim.name]
        return active

    def _nearest(self, wanted: np.ndarray) -> int:
        """The untaken member with the fewest differing dimensions (every member once the pool is used up)."""
        free = np.flatnonzero(~self.taken)
        candidates = free if len(free) else np.arange(len(self.keys))
        distance = (self.matrix[candidates] != wanted).sum(axis=1)
        nearest = candidates[distance == distance.min()]
        return int(self._rng.choice(nearest))

    def _mark_study(self, study: optuna.Study) -> None:
        """Mark the members earlier trials took (a resumed study's, or trials enqueued by hand)."""
        trials = study.get_trials(deepcopy=False)
        for trial in trials[self._seen_trials:]:
            if trial.params:
                try:
                    row = self._row.get(self.space.key(self.space.arch(trial.params)))
                except ArchError:  # a trial with partial params (still running): it marks itself when it finishes
                    continue
                if row is not None:
                    self.taken[row] = True
        self._seen_trials = len(trials)
