"""Coarse-to-fine child selection from a fully trained supernet (BigNAS, Yu et al., ECCV 2020,
Sec. 3.3 "Coarse-to-fine architecture selection").

Coarse step: a predefined grid of input resolutions x stage-wise configurations. Every stage
takes all its dimensions (width, depth, and each block's kernel and expand) at one common level
of its choices (``min``, ``mid`` or ``max``); the stem and head widths are grid axes of their
own. Each grid child within the largest budget is BN-calibrated and scored on the validation
split by the evaluator pool. Fine step: for every cost target, the best grid child within the
budget is perturbed at random (a few dimensions moved by one choice each, the result kept within
the budget), and the perturbations are calibrated and scored too. A target's winner is the most
accurate child evaluated anywhere in the run whose cost fits it.

No child is evaluated twice (children are deduplicated by ``space.key``), the perturbations come
from generators seeded by (seed, target), and the rows returned are ready for
``raynas.results.ResultStore.write_batch``.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from raynas.errors import ConfigError
from raynas.logs import get_logger
from raynas.search.objectives import CHEAP
from raynas.space import Arch, SearchSpace
from raynas.space.families.mobilenet import MobileNetSpec

logger = get_logger(__name__)

CostsFn = Callable[[list[Arch]], Mapping[str, np.ndarray]]
"""Cheap objectives of a batch of children, e.g. ``raynas.search.costs.CheapObjectives``."""
LEVELS = ("min", "mid", "max")
C = TypeVar("C")
"""A dimension's choice type, in ``coarse_grid``'s level pick."""
GRID = "grid"
PERTURB = "perturb"
PERTURB_TRIES = 50
"""Batches of ``perturbations`` candidates drawn per target before giving up on finding more."""


class CalibratingPool(Protocol):
    """What the selection needs from ``raynas.search.EvaluatorPool``."""

    def calibrate_and_evaluate(self, archs: Sequence[Arch]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Winner:
    """The most accurate evaluated child within one cost target."""

    target: float
    arch: str
    cost: float
    accuracy: float
    stage: str  # "grid" or "perturb": which step found it
    trial: int  # its row's trial number


@dataclass(frozen=True)
class CoarseToFineResult:
    """Per-target winners (in the order the targets were given) and every row of the run."""

    cost_name: str
    winners: tuple[Winner, ...]
    rows: tuple[dict[str, Any], ...]
    grid_size: int

    @property
    def evaluated(self) -> int:
        """Children calibrated and scored (grid and perturbations)."""
        return sum(row["status"] != "infeasible" for row in self.rows)


# --- the coarse grid --------------------------------------------------------------------------
def level_index(level: str, count: int) -> int:
    """Index of ``level`` among ``count`` ordered choices: min 0, mid (count-1)//2, max count-1."""
    if level not in LEVELS:
        raise ConfigError(f"unknown grid level {level!r}; valid levels: {list(LEVELS)}")
    return {"min": 0, "mid": (count - 1) // 2, "max": count - 1}[level]


def coarse_grid(space: SearchSpace, levels: Sequence[str] = LEVELS) -> list[Arch]:
    """Every input resolution x stem level x one level per stage x head level, deduplicated.

    A stage at level L takes width, depth and every active block's kernel and expand at L (a
    dimension with two choices has no distinct "mid"). Order is fixed: resolution first.
    """
    spec = _mobilenet_spec(space)
    if not levels:
        raise ConfigError(f"levels must name at least one of {list(LEVELS)}, got []")
    for level in levels:
        level_index(level, 1)

    def pick(choices: Sequence[C], level: str) -> C:
        return choices[level_index(level, len(choices))]

    grid: dict[str, Arch] = {}
    level_axes = [levels] * (len(spec.stages) + 2)  # stem, one per stage, head
    for resolution, (stem, *stage_levels, head) in itertools.product(spec.resolutions, itertools.product(*level_axes)):
        values: dict[str, Any] = {"resolution": resolution, "stem_width": pick(spec.stem.width, stem),
                                  "head_width": pick(spec.head.width, head)}
        for i, (stage, level) in enumerate(zip(spec.stages, stage_levels)):
            values[f"s{i}_width"] = pick(stage.width, level)
            values[f"s{i}_depth"] = depth = pick(stage.depth, level)
            for j in range(depth):
                values[f"s{i}_b{j}_kernel"] = pick(stage.kernel, level)
                values[f"s{i}_b{j}_expand"] = pick(stage.expand, level)
        arch = space.arch(values)
        grid.setdefault(space.key(arch), arch)
    return list(grid.values())


def _mobilenet_spec(space: SearchSpace) -> MobileNetSpec:
    if not isinstance(space.spec, MobileNetSpec):
        raise ConfigError(f"coarse-to-fine selection needs stage-wise choices (family mobilenet), "
                          f"got space {space.name!r} of family {space.family!r}")
    return space.spec


# --- the fine step ----------------------------------------------------------------------------
def perturb(space: SearchSpace, arch: Arch, rng: random.Random, max_changes: int = 2) -> Arch:
    """``arch`` with 1..``max_changes`` distinct random dimensions moved by one choice each.

    A stage made deeper copies its last block's kernel and expand into the new block.
    """
    values = dict(arch.items())
    changed: set[str] = set()
    for _ in range(rng.randint(1, max_changes)):
        movable = [d for d in space.dims
                   if d.name in values and d.name not in changed and len(d.choices) > 1 and d.is_active(values)]
        if not movable:
            return arch
        dim = rng.choice(movable)
        index = dim.choices.index(values[dim.name])
        step = rng.choice((-1, 1))
        if not 0 <= index + step < len(dim.choices):
            step = -step
        values[dim.name] = dim.choices[index + step]
        changed.add(dim.name)
        _fill_new_blocks(space, values)
    return space.arch({k: v for k, v in values.items() if space.dim(k).is_active(values)})


def _fill_new_blocks(space: SearchSpace, values: dict[str, Any]) -> None:
    """Give blocks that a deeper stage activates the kernel and expand of the block before them."""
    for d in space.dims:
        if d.name not in values and d.is_active(values):
            stage, block, kind = d.name.split("_")
            values[d.name] = values[f"{stage}_b{int(block[1:]) - 1}_{kind}"]


def _perturbations(
    space: SearchSpace, center: Arch, limit: float, cost_of: Callable[[list[Arch]], np.ndarray], count: int,
    seen: set[str], rng: random.Random, max_changes: int,
) -> list[Arch]:
    """Up to ``count`` new children near ``center`` whose cost fits ``limit``, none in ``seen``."""
    found: list[Arch] = []
    for _ in range(PERTURB_TRIES):  # batches of tries: a small space may have fewer new neighbours
        if len(found) == count:
            break
        batch = [perturb(space, center, rng, max_changes) for _ in range(count)]
        costs = cost_of(batch)
        for arch, cost in zip(batch, costs):
            key = space.key(arch)
            if cost <= limit and key not in seen and len(found) < count:
                seen.add(key)
                found.append(arch)
    return found


def _cost_column(costs_fn: CostsFn, archs: list[Arch], cost_name: str) -> np.ndarray:
    if cost_name not in CHEAP:
        raise ConfigError(f"unknown cost {cost_name!r}; valid costs: {list(CHEAP)}")
    values = costs_fn(archs)
    if cost_name not in values:
        raise ConfigError(f"cost {cost_name!r} is not computed here (available: {sorted(values)}); "
                          "latency_ms needs a latency table")
    return np.asarray(values[cost_name], dtype=float)


# --- the selection ----------------------------------------------------------------------------
def coarse_to_fine(
    space: SearchSpace,
    pool: CalibratingPool,
    costs_fn: CostsFn,
    targets: Sequence[float],
    cost_name: str = "flops",
    perturbations: int = 20,
    seed: int = 0,
    levels: Sequence[str] = LEVELS,
    max_changes: int = 2,
    max_grid: int = 2048,
    run_id: str = "coarse_to_fine",
    checkpoint_id: str | None = None,
) -> CoarseToFineResult:
    """Pick the most accurate child per cost target: a calibrated grid, then perturbations.

    ``targets`` are budgets on ``cost_name`` ("flops", "params" or "latency_ms", as
    ``costs_fn`` returns them). The grid always holds the smallest child; a target below its
    cost raises ``ConfigError`` naming it. Grid children above the largest target are not
    evaluated and come back as ``status="infeasible"`` rows. ``perturbations`` is per target;
    fewer come back when the neighbourhood within the budget runs out of new children.
    """
    if perturbations < 0 or max_changes < 1:
        raise ConfigError(f"perturbations must be >= 0 and max_changes >= 1, got {perturbations}, {max_changes}")
    grid = coarse_grid(space, levels)
    if space.key(space.min()) not in {space.key(a) for a in grid}:
        grid.insert(0, space.min())  # the anchor of the smallest budgets
    if len(grid) > max_grid:
        raise ConfigError(f"the coarse grid has {len(grid)} children, more than max_grid={max_grid}; "
                          f"pass fewer levels (e.g. levels=('min', 'max')) or a larger max_grid")
    cost_of = lambda archs: _cost_column(costs_fn, archs, cost_name)  # noqa: E731
    grid_costs = cost_of(grid)
    budgets = _check_targets(targets, cost_name, float(grid_costs.min()))
    log = _RunLog(space, costs_fn, cost_name, run_id, checkpoint_id, seed)
    log.skip([a for a, c in zip(grid, grid_costs) if c > max(budgets)], GRID)
    feasible = [a for a, c in zip(grid, grid_costs) if c <= max(budgets)]
    log.evaluate(pool, feasible, GRID)
    logger.info("coarse grid: %d children, %d within the largest budget", len(grid), len(feasible))
    seen = {space.key(a) for a in grid}
    centers = [log.best(budget, stage=GRID) for budget in budgets]
    fine: list[Arch] = []
    for index, (budget, center) in enumerate(zip(budgets, centers)):
        rng = random.Random(f"{seed}:{index}")
        center_arch = space.arch(center["arch"])
        fine += _perturbations(space, center_arch, budget, cost_of, perturbations, seen, rng, max_changes)
    log.evaluate(pool, fine, PERTURB)
    winners = tuple(_winner(budget, log.best(budget), cost_name) for budget in budgets)
    return CoarseToFineResult(cost_name, winners, tuple(log.rows), len(grid))


def _check_targets(targets: Sequence[float], cost_name: str, cheapest: float) -> list[float]:
    budgets = [float(t) for t in targets]
    if not budgets or not all(math.isfinite(b) for b in budgets):
        raise ConfigError(f"targets must be a non-empty list of finite {cost_name} budgets, got {list(targets)}")
    impossible = [b for b in budgets if b < cheapest]
    if impossible:
        raise ConfigError(f"no child meets {cost_name} <= {min(impossible):g}: the smallest child costs "
                          f"{cheapest:g} {cost_name}; every target must be >= {cheapest:g}")
    return budgets


def _winner(budget: float, row: dict[str, Any], cost_name: str) -> Winner:
    stage = PERTURB if row["sampler"].endswith(PERTURB) else GRID
    return Winner(budget, row["arch"], float(row[cost_name]), float(row["accuracy"]), stage, int(row["trial"]))


class _RunLog:
    """The rows of one selection run, numbered as trials in evaluation order."""

    def __init__(self, space: SearchSpace, costs_fn: CostsFn, cost_name: str, run_id: str,
                 checkpoint_id: str | None, seed: int) -> None:
        self.space, self.costs_fn, self.cost_name = space, costs_fn, cost_name
        self.common = {"run_id": run_id, "checkpoint_id": checkpoint_id, "seed": seed, "evaluator": "calibrate"}
        self.rows: list[dict[str, Any]] = []

    def _base(self, archs: list[Arch], stage: str) -> list[dict[str, Any]]:
        costs = self.costs_fn(archs) if archs else {}
        return [{**self.common, "trial": len(self.rows) + i, "arch": self.space.key(arch),
                 "sampler": f"coarse_to_fine:{stage}",
                 **{name: _plain(costs[name][i]) for name in CHEAP if name in costs}}
                for i, arch in enumerate(archs)]

    def skip(self, archs: list[Arch], stage: str) -> None:
        now = time.time()
        self.rows += [{**row, "status": "infeasible", "started_at": now, "finished_at": now}
                      for row in self._base(archs, stage)]

    def evaluate(self, pool: CalibratingPool, archs: list[Arch], stage: str) -> None:
        if not archs:
            return
        base = self._base(archs, stage)
        started = time.time()
        results = pool.calibrate_and_evaluate(archs)
        finished = time.time()
        for row, result in zip(base, results):
            if result.get("arch") != row["arch"]:
                raise RuntimeError(f"evaluator returned {result.get('arch')!r} for {row['arch']!r}")
            extra = {k: v for k, v in result.items() if k not in ("arch", "evaluator")}
            self.rows.append({**row, **extra, "started_at": started, "finished_at": finished})

    def best(self, budget: float, stage: str | None = None) -> dict[str, Any]:
        """The most accurate ok row within ``budget`` (ties: cheaper, then key order)."""
        fits = [r for r in self.rows if r["status"] == "ok" and r[self.cost_name] <= budget
                and (stage is None or r["sampler"].endswith(stage))]
        if not fits:
            failed = [r for r in self.rows if r["status"] == "failed"]
            reason = f"; first failure: {failed[0]['error'].splitlines()[0]}" if failed else ""
            raise RuntimeError(f"no child within {self.cost_name} <= {budget:g} was evaluated successfully{reason}")
        return min(fits, key=lambda r: (-r["accuracy"], r[self.cost_name], r["arch"]))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
