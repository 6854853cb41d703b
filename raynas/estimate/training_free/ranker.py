"""A learned ranker: boosted trees on a child's one-hot encoding and its training-free scores.

Each zero-cost score ranks a space only in part. A small regressor fitted on about a hundred
reference cells learns how to combine them with the architecture itself, the recipe White et al.
found strongest with few training cells ("How Powerful are Performance Predictors in Neural
Architecture Search?", NeurIPS 2021). The model is scikit-learn's
``HistGradientBoostingRegressor``, fitted by default to the targets' ranks (a few diverged cells
then weigh no more than any other); a non-finite score becomes a missing value, which its trees
route on their own.

A fitted ranker is saved as JSON, never pickle (format ``raynas-ranker/1``): the space's name and
digest, the feature and column names, the hyper-parameters, the training-set size, the metrics
it was judged by, and the trees as plain arrays. ``LearnedRanker.load`` walks those arrays with
numpy, so a loaded ranker predicts what the fitted model predicted without unpickling anything.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypedDict

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from raynas.atomic import write_atomic
from raynas.errors import ArchError, ConfigError
from raynas.estimate.bn_indicator import NotFittedError
from raynas.estimate.latency import space_digest
from raynas.estimate.training_free.metrics import ranking_metrics
from raynas.space import Arch, SearchSpace

FORMAT = "raynas-ranker/1"
TARGETS = {"rank": "the targets' ranks within the training set, scaled to (0, 1]: a few diverged cells "
                   "(NAS-Bench-201's 10% accuracies) weigh no more than any other",
           "value": "the targets as given (squared error)"}
"""What the trees are fitted to (``LearnedRanker(target=...)``)."""
FeatureColumns = Mapping[str, npt.ArrayLike]
"""Estimator name -> one score per architecture (array-like)."""
Archs = Sequence[Arch] | np.ndarray
"""Architectures, or their index matrix (``space.index_matrix``)."""
TreeArrays = dict[str, list[float | None]]
"""A tree's node arrays as JSON lists (``_Tree.to_dict``); None is an infinite threshold."""


class HyperParams(TypedDict, total=False):
    """``LearnedRanker``'s constructor arguments but ``features`` (a ranker file's ``params``)."""

    target: str
    max_iter: int
    learning_rate: float
    max_leaf_nodes: int
    min_samples_leaf: int
    l2_regularization: float
    seed: int


class RankerParams(HyperParams, total=False):
    """``LearnedRanker``'s constructor arguments (``get_params``; ``cross_validate`` takes them too)."""

    features: Sequence[str]


class _SpaceId(TypedDict):
    name: str
    digest: str


class _Model(TypedDict):
    baseline: float
    trees: list[TreeArrays]


class _Document(TypedDict):
    """A ranker file (``FORMAT``), as ``save`` writes it and ``load`` reads it."""

    format: str
    space: _SpaceId
    features: list[str]
    columns: list[str]
    params: HyperParams
    train_rows: int
    metrics: dict[str, object] | None
    model: _Model


# --- the design matrix -------------------------------------------------------------------------
def arch_feature_names(space: SearchSpace) -> list[str]:
    """The one-hot columns of ``arch_features``: ``dim=choice`` for every choice of every dimension."""
    return [f"{d.name}={c}" for d in space.dims for c in d.choices]


def arch_features(space: SearchSpace, archs: Archs) -> np.ndarray:
    """One 0/1 column per choice of every dimension; an inactive dimension has all its columns 0."""
    matrix = _index_matrix(space, archs)
    sizes = np.array([len(d.choices) for d in space.dims])
    offsets = np.cumsum(sizes) - sizes
    out = np.zeros((len(matrix), int(sizes.sum())))
    rows, dims = np.nonzero(matrix >= 0)
    out[rows, offsets[dims] + matrix[rows, dims]] = 1.0
    return out


def _index_matrix(space: SearchSpace, archs: Archs) -> np.ndarray:
    if not isinstance(archs, np.ndarray):
        return space.index_matrix(list(archs))
    sizes = np.array([len(d.choices) for d in space.dims])
    if archs.ndim != 2 or archs.shape[1] != len(sizes):
        raise ArchError(f"an index matrix of space {space.name!r} has shape (n, {len(sizes)}), got {archs.shape}")
    if ((archs < -1) | (archs >= sizes)).any():
        raise ArchError(f"an index matrix of space {space.name!r} holds choice indices in [-1, choices), "
                        f"got values in [{archs.min()}, {archs.max()}]")
    return archs


def _score_matrix(features: Sequence[str], columns: FeatureColumns, rows: int) -> np.ndarray:
    """The scores of ``features`` as float columns, non-finite values as NaN (missing)."""
    missing = [name for name in features if name not in columns]
    if missing:
        raise ConfigError(f"feature column(s) {missing} not given; got columns {sorted(columns)}")
    out = np.empty((rows, len(features)))
    for j, name in enumerate(features):
        values = np.asarray(columns[name], dtype=np.float64)
        if values.shape != (rows,):
            raise ConfigError(f"feature column {name!r} must hold one score per architecture ({rows}), "
                              f"got shape {values.shape}")
        out[:, j] = np.where(np.isfinite(values), values, np.nan)
    return out


# --- the fitted trees ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tree:
    """One fitted regression tree as arrays over its nodes; node 0 is the root.

    An inner node sends a row left when its value is ``<= threshold``, or when the value is NaN
    and ``missing_left``; a tree's prediction is the value of the leaf a row reaches.
    """

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray

    @classmethod
    def from_nodes(cls, nodes: np.ndarray) -> _Tree:
        """From a fitted ``TreePredictor.nodes`` array; categorical splits are not expected."""
        if nodes["is_categorical"].any():
            raise ConfigError("a ranker tree has a categorical split; only numeric splits can be saved")
        return cls._of(nodes["feature_idx"], nodes["num_threshold"], nodes["missing_go_to_left"], nodes["left"],
                       nodes["right"], nodes["is_leaf"], nodes["value"])

    @classmethod
    def _of(cls, *arrays: np.ndarray | Sequence[float | None]) -> _Tree:
        kinds = (np.intp, np.float64, bool, np.intp, np.intp, bool, np.float64)
        return cls(*(np.asarray(a, dtype=kind) for a, kind in zip(arrays, kinds, strict=True)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        node = np.zeros(len(x), dtype=np.intp)
        rows = np.flatnonzero(~self.is_leaf[node])
        while len(rows):
            at = node[rows]
            value = x[rows, self.feature[at]]
            go_left = np.where(np.isnan(value), self.missing_left[at], value <= self.threshold[at])
            node[rows] = np.where(go_left, self.left[at], self.right[at])
            rows = rows[~self.is_leaf[node[rows]]]
        return self.value[node]

    def to_dict(self) -> TreeArrays:
        """JSON-ready lists; an infinite threshold (every non-missing value goes left) is ``null``."""
        out = {f.name: getattr(self, f.name).tolist() for f in fields(self)}
        out["threshold"] = [None if t == np.inf else t for t in out["threshold"]]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float | None]], columns: int) -> _Tree:
        """Inverse of ``to_dict``; a tree that would read a missing column or never end is a ValueError."""
        arrays = {f.name: data[f.name] for f in fields(cls)}
        arrays["threshold"] = [np.inf if t is None else t for t in arrays["threshold"]]
        tree = cls._of(*arrays.values())
        n = len(tree.value)
        if not n or any(len(a) != n for a in arrays.values()):
            raise ValueError(f"a tree's node arrays must share one non-zero length, got "
                             f"{ {k: len(v) for k, v in arrays.items()} }")
        inner = np.flatnonzero(~tree.is_leaf)
        if not ((tree.feature[inner] >= 0) & (tree.feature[inner] < columns)).all():
            raise ValueError(f"a tree splits on a column outside [0, {columns})")
        children = np.concatenate([tree.left[inner], tree.right[inner]])
        if not ((children > np.tile(inner, 2)) & (children < n)).all():
            raise ValueError("a tree's children must come after their parent among its nodes")
        return tree


def _predict_trees(baseline: float, trees: Sequence[_Tree], x: np.ndarray) -> np.ndarray:
    """The baseline plus every tree's leaf value, summed in the order scikit-learn sums them."""
    out = np.zeros(len(x))
    out += baseline
    for tree in trees:
        out += tree.predict(x)
    return out


# --- the ranker ---------------------------------------------------------------------------------
class LearnedRanker:
    """Gradient-boosted trees on ``[one-hot architecture | the scores of features]``.

    The defaults suit about a hundred training cells: trees of 4 leaves, a low learning rate, L2
    on the leaf values, no early stopping (a validation split would starve the fit), and ranks as
    the target (``TARGETS``). They were chosen on NAS-Bench-201 CIFAR-10 with the cost terms (100
    cells to fit, 900 to test, 10 splits): Spearman 0.815, against 0.752 for FLOPs alone; other
    tree sizes, rates and L2 scored within 0.02 of it, raw accuracy as the target 0.17 below.
    ``fit`` stores ``model_`` (the scikit-learn model), ``trees_``/``baseline_`` (what
    ``predict`` walks), ``columns_``, ``n_train_`` and the space's ``space_name_``/``space_digest_``.
    """

    metrics_: dict[str, object] | None
    """Set by ``load``: the metrics saved with the ranker (None if there were none)."""

    def __init__(self, features: Sequence[str] = (), target: str = "rank", max_iter: int = 200,
                 learning_rate: float = 0.05, max_leaf_nodes: int = 4, min_samples_leaf: int = 3,
                 l2_regularization: float = 1.0, seed: int = 0) -> None:
        self.features = features
        self.target = target
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.seed = seed

    def get_params(self) -> RankerParams:
        return {"features": self.features, **self._hyper_params()}

    def _hyper_params(self) -> HyperParams:
        return {"target": self.target, "max_iter": self.max_iter, "learning_rate": self.learning_rate,
                "max_leaf_nodes": self.max_leaf_nodes, "min_samples_leaf": self.min_samples_leaf,
                "l2_regularization": self.l2_regularization, "seed": self.seed}

    def clone(self) -> LearnedRanker:
        """An unfitted ranker with the same constructor arguments."""
        return LearnedRanker(**self.get_params())

    def design(self, space: SearchSpace, archs: Archs, feature_columns: FeatureColumns) -> np.ndarray:
        """The model's input: the one-hot encoding, then the ``features`` columns in order."""
        encoded = arch_features(space, archs)
        return np.hstack([encoded, _score_matrix(self.features, feature_columns, len(encoded))])

    def fit(self, space: SearchSpace, archs: Archs, feature_columns: FeatureColumns,
            targets: Sequence[float] | np.ndarray) -> LearnedRanker:
        return self.fit_design(space, self.design(space, archs, feature_columns), targets)

    def fit_design(self, space: SearchSpace, x: np.ndarray, targets: Sequence[float] | np.ndarray) -> LearnedRanker:
        """``fit`` on a matrix from ``design`` (cross-validation builds it once for every fold)."""
        y = np.asarray(targets, dtype=np.float64)
        if y.shape != (len(x),) or len(y) < 2 or not np.isfinite(y).all():
            raise ConfigError(f"targets must be {len(x)} finite numbers (one per architecture, at least 2), "
                              f"got shape {y.shape} with {int((~np.isfinite(y)).sum())} non-finite")
        if self.target not in TARGETS:
            raise ConfigError(f"LearnedRanker: target must be one of {list(TARGETS)}, got {self.target!r}")
        if self.target == "rank":
            y = stats.rankdata(y) / len(y)
        model = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            early_stopping=False, categorical_features=None, random_state=self.seed)
        try:
            with threadpool_limits(limits=1, user_api="openmp"):  # threads only cost time on ~100 rows
                model.fit(x, y)
        except ValueError as err:  # scikit-learn's check of a hyper-parameter
            raise ConfigError(f"LearnedRanker: {err}") from err
        self.model_ = model
        self.trees_ = [_Tree.from_nodes(predictor.nodes) for (predictor,) in model._predictors]
        self.baseline_ = float(model._baseline_prediction.ravel()[0])
        self.columns_ = [*arch_feature_names(space), *self.features]
        self.n_train_ = len(y)
        self.space_name_, self.space_digest_ = space.name, space_digest(space)
        return self

    def predict(self, space: SearchSpace, archs: Archs, feature_columns: FeatureColumns) -> np.ndarray:
        """One score per architecture, higher predicting better: the quantile among the training
        targets (``target="rank"``), or the targets' own unit (``"value"``)."""
        self._check_ready(space)
        return _predict_trees(self.baseline_, self.trees_, self.design(space, archs, feature_columns))

    def predict_design(self, space: SearchSpace, x: np.ndarray) -> np.ndarray:
        self._check_ready(space)
        return _predict_trees(self.baseline_, self.trees_, x)

    def _check_ready(self, space: SearchSpace) -> None:
        if not hasattr(self, "trees_"):
            raise NotFittedError("this LearnedRanker is not fitted yet; call .fit(...) or LearnedRanker.load(...)")
        mismatch = self._space_mismatch(self.space_name_, self.space_digest_, space)
        if mismatch:
            raise ConfigError(mismatch)

    @staticmethod
    def _space_mismatch(name: str, digest: str, space: SearchSpace) -> str | None:
        if (name, digest) == (space.name, space_digest(space)):
            return None
        return (f"a ranker of space {name!r} (digest {digest}) cannot rank space {space.name!r} "
                f"(digest {space_digest(space)}); the space name and definition must match, so refit it")

    # --- files ----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], metrics: Mapping[str, object] | None = None) -> Path:
        """Write the ranker as JSON atomically (``raynas.atomic.write_atomic``), with ``metrics`` if given."""
        if not hasattr(self, "trees_"):
            raise NotFittedError("this LearnedRanker is not fitted yet; there is nothing to save")
        document: _Document = {
            "format": FORMAT, "space": {"name": self.space_name_, "digest": self.space_digest_},
            "features": list(self.features), "columns": self.columns_,
            "params": self._hyper_params(), "train_rows": self.n_train_,
            "metrics": None if metrics is None else _finite_or_null(metrics),
            "model": {"baseline": self.baseline_, "trees": [tree.to_dict() for tree in self.trees_]},
        }
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, lambda tmp: tmp.write_text(json.dumps(document, allow_nan=False) + "\n"))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: SearchSpace) -> LearnedRanker:
        """A ranker written by ``save``, for ``space``; ``metrics_`` holds the metrics saved with it."""
        source = Path(path)
        try:
            document = json.loads(source.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{source}: cannot read a ranker file ({type(err).__name__}: {err})") from err
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        if found != FORMAT:
            raise ConfigError(f"{source}: not a ranker file: format must be {FORMAT!r}, got {found!r}")
        try:
            ranker = cls._from_document(document)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: malformed ranker file ({type(err).__name__}: {err})") from err
        mismatch = cls._space_mismatch(ranker.space_name_, ranker.space_digest_, space)
        if mismatch:
            raise ConfigError(f"{source}: {mismatch}")
        expected = [*arch_feature_names(space), *ranker.features]
        for i, (want, got) in enumerate(itertools.zip_longest(expected, ranker.columns_)):
            if want != got:
                raise ConfigError(f"{source}: malformed ranker file: its columns must be the space's one-hot columns, "
                                  f"then the features; column {i} must be {want!r}, got {got!r}")
        return ranker

    @classmethod
    def _from_document(cls, document: _Document) -> LearnedRanker:
        ranker = cls([str(name) for name in document["features"]], **document["params"])
        ranker.space_name_, ranker.space_digest_ = str(document["space"]["name"]), str(document["space"]["digest"])
        ranker.columns_ = [str(c) for c in document["columns"]]
        ranker.trees_ = [_Tree.from_dict(t, len(ranker.columns_)) for t in document["model"]["trees"]]
        ranker.baseline_ = float(document["model"]["baseline"])
        ranker.n_train_ = int(document["train_rows"])
        ranker.metrics_ = document.get("metrics")
        return ranker


def _finite_or_null(metrics: Mapping[str, object]) -> dict[str, object]:
    """``metrics`` with every non-finite float (a NaN correlation) as None, so the JSON stays strict."""
    return {str(k): _finite_or_null(v) if isinstance(v, Mapping) else _finite_value(v) for k, v in metrics.items()}


def _finite_value(value: object) -> object:
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


# --- judging a ranker ---------------------------------------------------------------------------
def cross_validate(ranker: LearnedRanker | RankerParams, space: SearchSpace, archs: Archs,
                   feature_columns: FeatureColumns, targets: Sequence[float] | np.ndarray, folds: int = 5,
                   seed: int = 0) -> dict[str, float]:
    """Mean Spearman, Kendall and top-5% precision over ``folds`` seeded folds.

    ``ranker`` is an unfitted template (cloned for every fold) or its constructor arguments.
    """
    template, x, y = _prepare(ranker, space, archs, feature_columns, targets)
    if not 2 <= folds <= len(y):
        raise ConfigError(f"cross-validation needs 2 <= folds <= rows, got folds={folds} for {len(y)} rows")
    parts = np.array_split(np.random.default_rng(seed).permutation(len(y)), folds)
    scores = [_fit_and_score(template, space, x, y, np.setdiff1d(np.arange(len(y)), test), test)[1]
              for test in parts]
    return {"folds": folds, **{key: float(np.mean([s[key] for s in scores])) for key in scores[0]}}


def holdout(ranker: LearnedRanker | RankerParams, space: SearchSpace, archs: Archs,
            feature_columns: FeatureColumns, targets: Sequence[float] | np.ndarray, train_n: int = 100,
            seed: int = 0) -> tuple[LearnedRanker, dict[str, float]]:
    """Fit on ``train_n`` seeded random rows; the same metrics as ``cross_validate`` on the rest."""
    template, x, y = _prepare(ranker, space, archs, feature_columns, targets)
    fitted, metrics = _fit_and_score(template, space, x, y, *split_cells(len(y), train_n, seed))
    return fitted, {"train_rows": train_n, "test_rows": len(y) - train_n, **metrics}


def split_cells(rows: int, train_n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices, each sorted: ``train_n`` rows drawn with ``seed``, and the rest."""
    if not 2 <= train_n < rows:
        raise ConfigError(f"a holdout needs 2 <= train cells < rows, got {train_n} train cells for {rows} rows")
    order = np.random.default_rng(seed).permutation(rows)
    return np.sort(order[:train_n]), np.sort(order[train_n:])


def _prepare(ranker: LearnedRanker | RankerParams, space: SearchSpace, archs: Archs,
             feature_columns: FeatureColumns, targets: Sequence[float] | np.ndarray,
             ) -> tuple[LearnedRanker, np.ndarray, np.ndarray]:
    template = ranker.clone() if isinstance(ranker, LearnedRanker) else LearnedRanker(**ranker)
    x, y = template.design(space, archs, feature_columns), np.asarray(targets, dtype=np.float64)
    if y.shape != (len(x),):
        raise ConfigError(f"targets must hold one number per architecture ({len(x)}), got shape {y.shape}")
    return template, x, y


def _fit_and_score(template: LearnedRanker, space: SearchSpace, x: np.ndarray, y: np.ndarray, train: np.ndarray,
                   test: np.ndarray) -> tuple[LearnedRanker, dict[str, float]]:
    fitted = template.clone().fit_design(space, x[train], y[train])
    return fitted, ranking_metrics(fitted.predict_design(space, x[test]), y[test])
