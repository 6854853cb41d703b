"""SearchSpace: the dimensions of a space and every operation on architectures.

Pure Python (numpy only): a driver that only plans a search needs no torch and no ray.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from raynas.errors import ArchError
from raynas.space.arch import Arch
from raynas.space.dimension import Choice, Dimension

Rng = random.Random | int | None


class FamilySpec(Protocol):
    """What a family's parsed space description offers to ``SearchSpace``."""

    def dimensions(self) -> tuple[Dimension, ...]: ...

    def format_key(self, arch: Arch) -> str: ...

    def parse_key(self, key: str) -> dict[str, Choice]: ...

    def resolution(self, arch: Arch) -> int: ...


def as_rng(rng: Rng) -> random.Random:
    """Accept a ``random.Random``, a seed or None; samplers own their generator."""
    return rng if isinstance(rng, random.Random) else random.Random(rng)


@dataclass(frozen=True)
class SearchSpace:
    """A declarative search space: named dimensions plus the family that builds its children."""

    name: str
    family: str
    spec: FamilySpec
    source: str = field(default="<memory>", compare=False)
    definition: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    dims: tuple[Dimension, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.spec.dimensions()))
        object.__setattr__(self, "_by_name", {d.name: d for d in self.dims})

    # --- lookup -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    def dim(self, name: str) -> Dimension:
        by_name: dict[str, Dimension] = self._by_name  # type: ignore[attr-defined]
        if name not in by_name:
            raise ArchError(
                f"unknown dimension {name!r} for space {self.name!r}; "
                f"valid dimensions: {', '.join(self.names)}"
            )
        return by_name[name]

    # --- construction -------------------------------------------------------------------
    def _assemble(self, choose: Callable[[Dimension, dict[str, Any]], Choice]) -> Arch:
        values: dict[str, Any] = {}
        for d in self.dims:
            if d.is_active(values):
                values[d.name] = choose(d, values)
        return Arch(tuple(values.items()))

    def arch(self, values: Mapping[str, Any] | Arch | str) -> Arch:
        """Validate and build an architecture from a mapping, an Arch, or a canonical key.

        Inactive dimensions given as None (or NaN, as pandas writes them) are dropped; an
        active one that is missing, an unknown dimension or an invalid choice raises
        ``ArchError`` naming the valid choices.
        """
        if isinstance(values, str):
            values = self.spec.parse_key(values)
        given = {k: _normalise(v) for k, v in values.items()}
        for name in given:
            self.dim(name)

        def choose(d: Dimension, _: dict[str, Any]) -> Choice:
            if given.get(d.name) is None:
                raise ArchError(f"{self.name}: dimension {d.name!r} is missing; choices: {list(d.choices)}")
            value = given[d.name]
            for choice in d.choices:
                if choice == value:
                    return choice
            raise ArchError(
                f"{self.name}: {d.name}={value!r} is not a valid choice; valid choices: {list(d.choices)}"
            )

        return self._assemble(choose)

    def min(self) -> Arch:
        """The smallest child: the first choice of every dimension."""
        return self._assemble(lambda d, _: d.choices[0])

    def max(self) -> Arch:
        """The largest child: the last choice of every dimension."""
        return self._assemble(lambda d, _: d.choices[-1])

    def sample(self, rng: Rng = None) -> Arch:
        """A uniformly random choice per active dimension."""
        r = as_rng(rng)
        return self._assemble(lambda d, _: r.choice(d.choices))

    def mutate(self, arch: Arch, rng: Rng = None, prob: float = 0.1) -> Arch:
        """Resample each active dimension with probability ``prob``; new blocks are sampled."""
        r = as_rng(rng)

        def choose(d: Dimension, _: dict[str, Any]) -> Choice:
            if d.name in arch and r.random() >= prob:
                return arch[d.name]
            return r.choice(d.choices)

        return self._assemble(choose)

    def crossover(self, a: Arch, b: Arch, rng: Rng = None) -> Arch:
        """Take each dimension from a random parent that has it (uniform crossover)."""
        r = as_rng(rng)

        def choose(d: Dimension, _: dict[str, Any]) -> Choice:
            parents = [p[d.name] for p in (a, b) if d.name in p]
            return r.choice(parents) if parents else r.choice(d.choices)

        return self._assemble(choose)

    # --- keys and encodings -------------------------------------------------------------
    def key(self, arch: Arch) -> str:
        """The canonical string key (the standard string for NAS-Bench-201)."""
        return self.spec.format_key(arch)

    def resolution(self, arch: Arch) -> int:
        """The input resolution this child runs at."""
        return self.spec.resolution(arch)

    def encode(self, arch: Arch) -> dict[str, Choice | None]:
        """Flat named columns, one per dimension; inactive dimensions are None."""
        return {d.name: arch.get(d.name) for d in self.dims}

    def decode(self, row: Mapping[str, Any]) -> Arch:
        """Inverse of ``encode``: ignores columns that are not dimensions."""
        by_name: dict[str, Dimension] = self._by_name  # type: ignore[attr-defined]
        return self.arch({k: v for k, v in row.items() if k in by_name})

    def index_matrix(self, archs: list[Arch]) -> np.ndarray:
        """Choice indices, shape (n, n_dims), -1 for inactive dimensions."""
        out = np.full((len(archs), len(self.dims)), -1, dtype=np.int16)
        lookups = [{c: i for i, c in enumerate(d.choices)} for d in self.dims]
        for row, arch in enumerate(archs):
            for col, d in enumerate(self.dims):
                value = arch.get(d.name)
                if value is not None:
                    out[row, col] = lookups[col][value]
        return out

    def sample_index_matrix(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` uniformly sampled children as an index matrix, vectorised (for million-scale scoring)."""
        gen = np.random.default_rng(seed)
        out = np.empty((n, len(self.dims)), dtype=np.int16)
        col_of = {d.name: i for i, d in enumerate(self.dims)}
        for col, d in enumerate(self.dims):
            out[:, col] = gen.integers(0, len(d.choices), size=n)
            if d.parent is not None:
                parent = self.dim(d.parent)
                parent_values = np.asarray(parent.choices)[out[:, col_of[d.parent]]]
                out[parent_values <= d.threshold, col] = -1
        return out

    def from_index_matrix(self, matrix: np.ndarray) -> list[Arch]:
        """Inverse of ``index_matrix``."""
        return [
            Arch(tuple((d.name, d.choices[i]) for d, i in zip(self.dims, row) if i >= 0))
            for row in matrix.tolist()
        ]

    # --- counting -----------------------------------------------------------------------
    def _groups(self) -> list[tuple[Dimension, list[Dimension]]]:
        children: dict[str, list[Dimension]] = {}
        for d in self.dims:
            if d.parent is not None:
                children.setdefault(d.parent, []).append(d)
        return [(d, children.get(d.name, [])) for d in self.dims if d.parent is None]

    def size(self) -> int:
        """The exact number of distinct architectures (conditional dimensions counted once)."""
        total = 1
        for root, kids in self._groups():
            total *= sum(
                math.prod(len(k.choices) for k in kids if k.is_active({root.name: v})) for v in root.choices
            )
        return total

    def enumerate(self, limit: int = 1_000_000) -> Iterator[Arch]:
        """Every architecture, in a fixed order; refuses spaces larger than ``limit``."""
        size = self.size()
        if size > limit:
            raise ArchError(f"{self.name} has {size} architectures, more than the enumeration limit {limit}")
        per_group = [list(_group_assignments(root, kids)) for root, kids in self._groups()]
        order = {d.name: i for i, d in enumerate(self.dims)}
        for combo in itertools.product(*per_group):
            items = sorted((kv for part in combo for kv in part), key=lambda kv: order[kv[0]])
            yield Arch(tuple(items))

    def __len__(self) -> int:
        return self.size()


def _group_assignments(root: Dimension, kids: list[Dimension]) -> Iterator[list[tuple[str, Choice]]]:
    for v in root.choices:
        active = [k for k in kids if k.is_active({root.name: v})]
        for values in itertools.product(*(k.choices for k in active)):
            yield [(root.name, v), *zip((k.name for k in active), values)]


def _normalise(value: Any) -> Any:
    """Map pandas/numpy scalars to plain Python; NaN means 'inactive'."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    return value
