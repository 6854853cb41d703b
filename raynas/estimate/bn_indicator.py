"""The BN indicator of BN-NAS (Chen et al., "BN-NAS: Neural Architecture Search with Batch
Normalization", ICCV 2021): score a child by the BatchNorm gammas of its ops.

An op's score is the mean |gamma| of its last BN over the channels the child uses; a child's
score combines its ops. The score needs no data and no forward pass, so ``BNIndicator.fit``
turns the supernet's gammas into one small table per op, and ``BNIndicator.score`` is a numpy
table lookup over an index matrix (millions of children per second on one core).

Definitions (the "Questions the code must answer" of DESIGN.md):

- **What an op is.** MobileNet: one inverted-residual block, scored by its projection BN
  (``project.bn``) in the BN slot its (kernel, expand) choice selects, over the first
  ``s{i}_width`` channels; the stem and head convs are ops too (their widths are searchable),
  scored by their BN over the first ``stem_width`` / ``head_width`` channels. NAS-Bench-201: the op on one edge, averaged over the cells (each
  cell has its own weights, all cells share the architecture).
- **BN layout.** The indicator tells two choices apart only if they own different BN
  parameters. Under the supernet's "shared" layout kernel and expand share one slot, so they
  score equal; "private" gives each (kernel, expand) its own slot; "private_resolution" also
  one per input resolution, the only way a data-free indicator can see resolution.
- **Ops without a BN.** ``none`` removes its edge and always scores 0; skip_connect and
  avg_pool_3x3 score ``parameterless_score`` (0 by default, as BN-NAS has no term for them).
- **Elastic depth.** ``depth_rule="sum"`` is BN-NAS: deeper children add more terms.
  ``"mean"`` averages over the active ops and removes the depth count. Skipped blocks
  contribute nothing under either rule.
- **An untrained indicator is a structure count.** At init every gamma is 1, so with
  ``measure="abs_gamma"`` and ``depth_rule="sum"`` a MobileNet child scores exactly its number
  of active blocks plus 2 (stem and head), and an NB201 child its number of BN-owning ops (plus
  ``parameterless_score`` per BN-free op). Compare a trained indicator against this baseline.
- **How far gammas move.** ``measure="gamma_shift"`` scores mean |gamma - 1| instead, the
  distance from the BN-only initialisation; it is 0 at init.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict, cast

import numpy as np
import torch
from torch import nn

from raynas.errors import ArchError, ConfigError, RaynasError
from raynas.space import Arch, SearchSpace
from raynas.space._family import family_part
from raynas.supernet import BATCHNORMS, ElasticBatchNorm2d, Supernet
from raynas.supernet.mobilenet import BN_LAYOUTS, MobileNetSupernet
from raynas.supernet.nb201 import Cell, NB201Supernet, ReLUConvBN, Zero

GAMMA_INIT = 1.0
"""BN-only training (and BN-NAS) starts every gamma at 1; ``gamma_shift`` measures from here."""

Measure = Callable[[np.ndarray], np.ndarray]
MEASURES: dict[str, Measure] = {
    "abs_gamma": np.abs,
    "gamma_shift": lambda gamma: np.abs(gamma - GAMMA_INIT),
}
"""Per-channel quantity averaged over an op's active channels; add an entry for a new measure."""

DEPTH_RULES = ("sum", "mean")
CHUNK_ROWS = 1 << 15
"""Rows scored per numpy pass: keeps the (rows, ops) temporaries in cache for any input size."""


class NotFittedError(RaynasError, AttributeError):
    """An estimator was used before ``fit``."""


@dataclass(frozen=True)
class OpTable:
    """One op's score for every combination of the choices it depends on.

    ``values[a, b, ...]`` is the op's score when dimension ``axes[0]`` takes its choice ``a``,
    ``axes[1]`` its choice ``b``, and so on. The op is active in a child when all its axes are.
    """

    axes: tuple[str, ...]
    values: np.ndarray


# --- options ---------------------------------------------------------------------------------
def check_options(depth_rule: str, parameterless_score: float, measure: str) -> None:
    """Raise ``ConfigError`` naming the valid values when an option is unknown."""
    if depth_rule not in DEPTH_RULES:
        raise ConfigError(f"unknown depth_rule {depth_rule!r}; valid depth rules: {list(DEPTH_RULES)}")
    if measure not in MEASURES:
        raise ConfigError(f"unknown measure {measure!r}; valid measures: {sorted(MEASURES)}")
    number = isinstance(parameterless_score, (int, float)) and not isinstance(parameterless_score, bool)
    if not number or not math.isfinite(parameterless_score):
        raise ConfigError(f"parameterless_score must be a finite number, got {parameterless_score!r}")


# --- reading gammas --------------------------------------------------------------------------
def last_bn(module: nn.Module) -> nn.Module | None:
    """The last BN registered in ``module`` (BN-NAS scores an op by it), or None if it has none."""
    bns = [m for m in module.modules() if isinstance(m, BATCHNORMS)]
    return bns[-1] if bns else None


def gamma_of(bn: nn.Module) -> torch.Tensor:
    """The weight (gamma) of a BN, plain or elastic; ``nn.Module`` types its attributes loosely."""
    return cast(torch.Tensor, bn.weight)


def slot_gammas(bn: nn.Module) -> np.ndarray:
    """Gammas as float64, shape (slots, channels); a plain BN has one slot."""
    return np.atleast_2d(gamma_of(bn).detach().cpu().double().numpy())


def prefix_means(gammas: np.ndarray, measure: str, widths: Sequence[int]) -> np.ndarray:
    """Mean of ``measure`` over the first w channels, per slot and width: shape (slots, len(widths)).

    One cumulative sum serves every width (top-n channels), so elastic width is a lookup.
    """
    totals = np.cumsum(MEASURES[measure](gammas), axis=1)
    widths_arr = np.asarray(widths, dtype=np.intp)
    return totals[:, widths_arr - 1] / widths_arr


def combine(total: float | np.ndarray, count: float | np.ndarray, depth_rule: str) -> float | np.ndarray:
    """A child's score from the sum of its op scores and its number of active ops."""
    return total if depth_rule == "sum" else total / np.maximum(count, 1)


# --- per-family tables (``Family.bn_tables``) ------------------------------------------------
def mobilenet_tables(supernet: MobileNetSupernet, measure: str, parameterless_score: float) -> dict[str, OpTable]:
    """One table per block, shape (kernel, expand, [resolution,] width choices), plus the stem
    and head convs, whose widths are searchable too (shape (width choices,)).

    Every op owns a BN, so ``parameterless_score`` is unused here.
    """
    spec = supernet.spec
    tables: dict[str, OpTable] = {
        "stem": OpTable(("stem_width",), prefix_means(slot_gammas(supernet.stem.bn), measure, spec.stem.width)[0]),
        "head": OpTable(("head_width",),
                        prefix_means(slot_gammas(supernet.head.conv.bn), measure, spec.head.width)[0]),
    }
    stages = zip(supernet.spec.stages, supernet.stage_blocks(), supernet.slots)
    by_resolution = "resolution" in BN_LAYOUTS[supernet.bn_layout]
    resolutions = spec.resolutions if by_resolution else spec.resolutions[:1]
    for i, (stage, blocks, slots) in enumerate(stages):
        slot_of = np.array([[[slots.slot(k, e, r) for r in resolutions] for e in stage.expand] for k in stage.kernel],
                           dtype=np.intp)
        if not by_resolution:
            slot_of = slot_of[:, :, 0]
        for j, block in enumerate(blocks):
            means = prefix_means(slot_gammas(block.project.bn), measure, stage.width)
            axes = (f"s{i}_b{j}_kernel", f"s{i}_b{j}_expand", *(("resolution",) if by_resolution else ()), f"s{i}_width")
            tables[f"s{i}_b{j}"] = OpTable(axes, means[slot_of])
    return tables


def nb201_tables(supernet: NB201Supernet, measure: str, parameterless_score: float) -> dict[str, OpTable]:
    """One table per edge, shape (op choices,): the op's score averaged over the cells."""
    cells = [layer for layer in supernet.network.layers if isinstance(layer, Cell)]

    def op_score(edge: str, op: str) -> float:
        # every cell holds the same op on an edge, so either all of them have a BN or none does
        bns = [bn for bn in (last_bn(cell.op(edge, op)) for cell in cells) if bn is not None]
        if not bns:
            return 0.0 if isinstance(cells[0].op(edge, op), Zero) else float(parameterless_score)
        gammas = [slot_gammas(bn) for bn in bns]
        return float(np.mean([prefix_means(g, measure, [g.shape[1]])[0, 0] for g in gammas]))

    return {
        d.name: OpTable((d.name,), np.array([op_score(d.name, str(op)) for op in d.choices]))
        for d in supernet.space.dims
    }


# --- vectorised lookup -----------------------------------------------------------------------
@dataclass(frozen=True)
class _FlatLookup:
    """All op tables flattened into one array, with an all-zero pad slot per axis.

    Each table is padded by one leading entry per axis and indexed by ``choice + 1``, so an
    inactive dimension (index -1 in the index matrix) lands on a pad entry holding 0: skipped
    ops cost no branch. ``flat index = sum_a matrix[:, columns[:, a]] * strides[:, a] + offsets``.
    """

    values: np.ndarray  # (total,) op scores, 0 on pad entries
    active: np.ndarray  # (total,) 1.0 where every axis is active, else 0.0
    columns: np.ndarray  # (n_ops, n_axes) index-matrix column of each axis
    strides: np.ndarray  # (n_ops, n_axes) element strides, 0 for unused axes
    offsets: np.ndarray  # (n_ops,) start of each table, shifted by +1 per axis

    @classmethod
    def build(cls, space: SearchSpace, tables: dict[str, OpTable]) -> "_FlatLookup":
        column_of = {name: col for col, name in enumerate(space.names)}
        n_axes = max(len(t.axes) for t in tables.values())
        values, active = [], []
        columns = np.zeros((len(tables), n_axes), dtype=np.intp)
        strides = np.zeros((len(tables), n_axes), dtype=np.intp)
        offsets = np.zeros(len(tables), dtype=np.intp)
        start = 0
        for t, table in enumerate(tables.values()):
            padded, is_active = _padded(table.values)
            k = len(table.axes)
            columns[t, :k] = [column_of[a] for a in table.axes]
            strides[t, :k] = np.asarray(padded.strides) // padded.itemsize
            offsets[t] = start + strides[t].sum()
            values.append(padded.ravel())
            active.append(is_active.ravel())
            start += padded.size
        return cls(np.concatenate(values), np.concatenate(active), columns, strides, offsets)

    def flat_index(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, ops) positions in ``values`` of every op of every row of an index matrix."""
        flat = np.broadcast_to(self.offsets, (matrix.shape[0], len(self.offsets))).copy()
        for a in range(self.columns.shape[1]):
            flat += matrix[:, self.columns[:, a]] * self.strides[:, a]
        return flat

    def combined(self, matrix: np.ndarray, depth_rule: str) -> np.ndarray:
        """Each row's score under ``depth_rule``; op counts are only looked up when needed."""
        flat = self.flat_index(matrix)
        total = np.take(self.values, flat).sum(axis=1)
        if depth_rule == "sum":
            return total
        return np.asarray(combine(total, np.take(self.active, flat).sum(axis=1), depth_rule))


def _padded(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` with one zero entry prepended on every axis, and the mask of real entries."""
    padded = np.zeros(tuple(s + 1 for s in values.shape))
    mask = np.zeros(padded.shape)
    inner = tuple(slice(1, None) for _ in values.shape)
    padded[inner] = values
    mask[inner] = 1.0
    return padded, mask


# --- the estimator ---------------------------------------------------------------------------
class IndicatorSettings(TypedDict, total=False):
    """``BNIndicator``'s constructor arguments, as a pool or a scoring context carries them."""

    depth_rule: str
    parameterless_score: float
    measure: str


class BNIndicator:
    """BN-NAS indicator as a scikit-learn-style estimator: ``BNIndicator().fit(supernet).score(archs)``.

    ``fit`` reads the gammas once into ``table_`` (op name -> ``OpTable``); ``score`` is a pure
    numpy lookup, so it is safe to call from any process that holds the fitted estimator. Neither
    needs a device: ``fit`` copies the gammas to host memory from wherever the supernet lives
    (CPU or GPU), and ``score`` never touches torch.
    """

    def __init__(self, depth_rule: str = "sum", parameterless_score: float = 0.0, measure: str = "abs_gamma") -> None:
        self.depth_rule = depth_rule
        self.parameterless_score = parameterless_score
        self.measure = measure

    def fit(self, supernet: Supernet) -> "BNIndicator":
        """Build the per-(op, choice) tables from the supernet's current gammas."""
        check_options(self.depth_rule, self.parameterless_score, self.measure)
        build_tables = family_part(supernet.space.family, "bn_tables", "BN indicator")
        self.space_ = supernet.space
        self.table_ = build_tables(supernet, self.measure, float(self.parameterless_score))
        self._lookup = _FlatLookup.build(self.space_, self.table_)
        return self

    def score(self, archs: Arch | Sequence[Arch] | np.ndarray) -> np.ndarray:
        """Scores (float64, one per child) of an ``Arch``, a list of them, or an index matrix
        of the space (``space.index_matrix``/``sample_index_matrix``; the fast path)."""
        if not hasattr(self, "table_"):
            raise NotFittedError("this BNIndicator is not fitted yet; call .fit(supernet) before .score()")
        check_options(self.depth_rule, self.parameterless_score, self.measure)
        if isinstance(archs, Arch):
            archs = [archs]
        matrix = archs if isinstance(archs, np.ndarray) else self.space_.index_matrix(list(archs))
        self._check_matrix(matrix)
        out = np.empty(matrix.shape[0])
        for start in range(0, matrix.shape[0], CHUNK_ROWS):
            out[start : start + CHUNK_ROWS] = self._lookup.combined(matrix[start : start + CHUNK_ROWS], self.depth_rule)
        return out

    def _check_matrix(self, matrix: np.ndarray) -> None:
        """Reject matrices of another space, so a bad index never reads another op's table."""
        n_choices = np.array([len(d.choices) for d in self.space_.dims])
        if matrix.ndim != 2 or matrix.shape[1] != len(n_choices) or not np.issubdtype(matrix.dtype, np.integer):
            raise ArchError(
                f"index matrix must be integer with shape (n, {len(n_choices)}) for space {self.space_.name!r}, "
                f"got {matrix.dtype} {matrix.shape}"
            )
        if matrix.shape[0] and (matrix.min() < -1 or np.any(matrix.max(axis=0) >= n_choices)):
            raise ArchError(
                f"index matrix entries must be -1 (inactive) or a valid choice index of {self.space_.name!r}"
            )


# --- slow reference (``Family.bn_walker``) ---------------------------------------------------
def score_direct(
    supernet: Supernet, arch: Arch, depth_rule: str = "sum", parameterless_score: float = 0.0,
    measure: str = "abs_gamma",
) -> float:
    """The indicator of one child, read by walking the activated network: the obvious, slow
    definition that the tables of ``BNIndicator`` are tested against."""
    check_options(depth_rule, parameterless_score, measure)
    op_scores = family_part(supernet.space.family, "bn_walker", "BN indicator")
    scores = op_scores(supernet, arch, measure, float(parameterless_score))
    return float(combine(sum(scores), len(scores), depth_rule))


def _mean_measure(gamma: torch.Tensor, measure: str) -> float:
    return float(MEASURES[measure](gamma.detach().cpu().double().numpy()).mean())


def mobilenet_op_scores(
    supernet: MobileNetSupernet, arch: Arch, measure: str, parameterless_score: float
) -> list[float]:
    scores = [_mean_measure(gamma_of(supernet.stem.bn)[0, : int(arch["stem_width"])], measure),
              _mean_measure(gamma_of(supernet.head.conv.bn)[0, : int(arch["head_width"])], measure)]
    with supernet.activated(arch):
        for i, blocks in enumerate(supernet.stage_blocks()):
            width = int(arch[f"s{i}_width"])
            for block in blocks[: int(arch[f"s{i}_depth"])]:
                bn = cast(ElasticBatchNorm2d, block.project.bn)
                scores.append(_mean_measure(bn.weight[bn.slot, :width], measure))
    return scores


def nb201_op_scores(supernet: NB201Supernet, arch: Arch, measure: str, parameterless_score: float) -> list[float]:
    cells = [layer for layer in supernet.network.layers if isinstance(layer, Cell)]
    scores = []
    for edge in supernet.space.names:
        ops = [cell.op(edge, str(arch[edge])) for cell in cells]
        if isinstance(ops[0], ReLUConvBN):
            convs = cast(list[ReLUConvBN], ops)  # every cell holds the same op on an edge
            scores.append(float(np.mean([_mean_measure(gamma_of(op[-1]), measure) for op in convs])))
        else:
            scores.append(0.0 if isinstance(ops[0], Zero) else parameterless_score)
    return scores

