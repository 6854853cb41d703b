"""Fit a learned ranker on reference accuracies and estimator scores; judge it by k-fold CV.

    raynas ranker fit SPACE --reference TABLE --scores SCORES --features NAME[,NAME...] --out FILE.json
                      [--accuracy-column COL] [--folds 5] [--train-cells N] [--seed 0]

TABLE holds ``arch`` and the true accuracy; SCORES holds ``arch`` and one column per estimator
(what ``raynas score`` writes). Rows are joined on ``arch``. The ranker is saved as JSON
(``LearnedRanker.load(FILE, space)`` reads it back).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from raynas.cli.common import at_least, positive_int
from raynas.cli.estimate_common import ARCH_TABLES
from raynas.errors import ArchError, ConfigError
from raynas.estimate.training_free.ranker import LearnedRanker, cross_validate, holdout, split_cells
from raynas.space import SearchSpace, load_space


def add(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ranker_command", required=True)
    fit = sub.add_parser("fit", help="fit boosted trees on one-hot cells and estimator scores; write them as JSON",
                         formatter_class=parser.formatter_class)
    fit.add_argument("space", help="a shipped space name (nb201, ...) or a .yaml path")
    fit.add_argument("--reference", type=Path, required=True, help="table (.csv/.parquet) of `arch` and true accuracy")
    fit.add_argument("--accuracy-column", default=None,
                     help="the reference's accuracy column (default: its first numeric column other than `arch`)")
    fit.add_argument("--scores", type=Path, required=True,
                     help="table (.csv/.parquet) of `arch` and one column per estimator (`raynas score` writes one)")
    fit.add_argument("--features", type=_names, required=True, help="estimator columns to use: NAME[,NAME...]")
    fit.add_argument("--out", type=Path, required=True, help="the ranker's .json file")
    fit.add_argument("--folds", type=at_least(2), default=5, help="cross-validation folds")
    fit.add_argument("--train-cells", type=positive_int, default=None,
                     help="fit on N seeded random cells only, and report the metrics on the others too")
    fit.add_argument("--seed", type=int, default=0, help="seed of the folds, the cells and the trees")


def run(args: argparse.Namespace) -> int:
    from raynas.bpe import load_reference_column  # Ray Tune loads only here

    space = load_space(args.space)
    column = args.accuracy_column or _first_numeric(_read_table(args.reference, "reference table"), args.reference)
    reference = load_reference_column(args.reference, space, column)
    scores = _scores(args.scores, space, args.features)
    rows = [i for i, key in enumerate(reference.keys) if key in scores.index]
    matrix = space.index_matrix([reference.archs[i] for i in rows])
    accuracy = np.array([reference.accuracy[i] for i in rows])
    frame = scores.loc[[reference.keys[i] for i in rows]]
    print(f"{len(rows):,} cells of {space.name} have a reference accuracy ({column}) and scores "
          f"({len(reference) - len(rows):,} reference cells unscored); features: {', '.join(args.features)}")
    if len(rows) < args.folds:
        raise ConfigError(f"{args.reference} and {args.scores} share {len(rows)} cells; --folds {args.folds} "
                          f"needs at least {args.folds}")
    ranker = LearnedRanker(args.features, seed=args.seed)
    train = split_cells(len(rows), args.train_cells, args.seed)[0] if args.train_cells else np.arange(len(rows))
    metrics = {"cv": cross_validate(ranker, space, matrix[train], _columns(frame.iloc[train]), accuracy[train],
                                    args.folds, args.seed)}
    print(_line(f"{args.folds}-fold CV on {len(train):,} cells", metrics["cv"]))
    if args.train_cells:
        ranker, metrics["holdout"] = holdout(ranker, space, matrix, _columns(frame), accuracy, args.train_cells,
                                             args.seed)
        print(_line(f"fit on {args.train_cells:,}, held out {len(rows) - args.train_cells:,} cells",
                    metrics["holdout"]))
    else:
        ranker.fit(space, matrix, _columns(frame), accuracy)
    print(f"wrote {ranker.save(args.out, metrics)}")
    return 0


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"must be distinct names separated by commas, got {text!r}")
    return names


def _read_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV or Parquet table with an ``arch`` column; anything else is one clear line."""
    if path.suffix not in ARCH_TABLES:
        raise ConfigError(f"{path}: a {what} must be a .csv or .parquet file")
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        frame = ARCH_TABLES[path.suffix][1](path)
    except (ValueError, OSError) as err:
        raise ConfigError(f"{path}: not a readable {ARCH_TABLES[path.suffix][0]} {what} ({' '.join(str(err).split())})"
                          ) from err
    if "arch" not in frame.columns:
        raise ConfigError(f"{path}: a {what} needs an `arch` column; columns: {list(frame.columns)}")
    return frame


def _first_numeric(frame: pd.DataFrame, path: Path) -> str:
    numeric = [c for c in frame.columns if c != "arch" and pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric:
        raise ConfigError(f"{path}: no numeric accuracy column besides `arch`; columns: {list(frame.columns)}")
    return str(numeric[0])


def _scores(path: Path, space: SearchSpace, features: list[str]) -> pd.DataFrame:
    """The ``features`` columns of a scores table, indexed by canonical arch key."""
    frame = _read_table(path, "scores table")
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: no column for feature(s) {missing}; columns: {list(frame.columns)}")
    wrong = [name for name in features if not pd.api.types.is_numeric_dtype(frame[name])]
    if wrong:
        raise ConfigError(f"{path}: feature column(s) {wrong} must be numeric")
    keys = []
    for row, key in enumerate(frame["arch"].astype(str), start=1):
        try:
            keys.append(space.key(space.arch(key)))
        except ArchError as err:
            raise ArchError(f"{path}: row {row}: {err}") from err
    scores = frame[features].set_axis(keys)
    repeated = sorted(set(scores.index[scores.index.duplicated()]))
    if repeated:
        raise ConfigError(f"{path}: architecture(s) listed more than once: {repeated[:5]}")
    return scores


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {str(name): frame[name].to_numpy(dtype=np.float64) for name in frame.columns}


def _line(title: str, metrics: dict[str, float]) -> str:
    return (f"{title}: Spearman {metrics['spearman_rho']:.3f}, Kendall {metrics['kendall_tau']:.3f}, "
            f"top-5% precision {metrics['top_precision']:.3f}")
