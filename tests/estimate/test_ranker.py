"""The learned ranker: one-hot encoding, JSON round trip against scikit-learn, CV metrics, the CLI.

Synthetic data only: the truth is a random linear function of NAS-Bench-201's one-hot encoding,
one estimator sees it through noise, another is pure noise with missing and infinite values.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raynas.cli import main
from raynas.errors import ArchError, ConfigError
from raynas.estimate.training_free.metrics import ranking_metrics, top_precision
from raynas.estimate.training_free.ranker import (
    FORMAT,
    LearnedRanker,
    arch_feature_names,
    arch_features,
    cross_validate,
    holdout,
)
from raynas.space import load_space

FEATURES = ("signal", "noise")


@pytest.fixture(scope="module")
def space():
    return load_space("nb201")


@pytest.fixture(scope="module")
def cells(space):
    """(index matrix, feature columns, accuracy) of 300 distinct cells."""
    rng = np.random.default_rng(0)
    matrix = np.unique(space.sample_index_matrix(400, seed=0), axis=0)[:300]
    truth = arch_features(space, matrix) @ rng.normal(size=30) + 80
    noise = rng.normal(size=len(truth))
    noise[::7], noise[3::11] = np.nan, np.inf
    return matrix, {"signal": truth + rng.normal(scale=0.5, size=len(truth)), "noise": noise}, truth


def rows(columns, index):
    return {name: values[index] for name, values in columns.items()}


@pytest.fixture(scope="module")
def fitted(space, cells):
    matrix, columns, truth = cells
    return LearnedRanker(FEATURES, max_iter=50).fit(space, matrix[:200], rows(columns, slice(200)), truth[:200])


# --- encoding -----------------------------------------------------------------------------------
def test_one_hot_has_one_column_per_choice_named_dim_equals_choice(space, cells):
    encoded = arch_features(space, cells[0])
    names = arch_feature_names(space)
    assert encoded.shape == (300, 30) and len(names) == 30 and names[:2] == ["edge_0_1=none", "edge_0_1=skip_connect"]
    assert (encoded.sum(axis=1) == 6).all()
    assert np.array_equal(arch_features(space, space.from_index_matrix(cells[0][:5])), encoded[:5])


def test_an_inactive_dimension_has_all_its_columns_zero():
    tiny = load_space("tiny")
    smallest = tiny.index_matrix([tiny.min()])
    encoded = arch_features(tiny, smallest)[0]
    names = arch_feature_names(tiny)
    inactive = [d.name for d, i in zip(tiny.dims, smallest[0]) if i < 0]
    assert inactive and all(encoded[j] == 0 for j, n in enumerate(names) if n.split("=")[0] in inactive)
    assert encoded.sum() == len(tiny.dims) - len(inactive)


def test_an_index_matrix_of_another_shape_is_refused(space):
    with pytest.raises(ArchError, match=r"shape \(n, 6\)"):
        arch_features(space, np.zeros((2, 5), dtype=int))
    with pytest.raises(ArchError, match="choice indices"):
        arch_features(space, np.full((1, 6), 5))


# --- the JSON round trip ------------------------------------------------------------------------
def test_the_saved_trees_predict_what_scikit_learn_predicts(space, cells, fitted, tmp_path):
    matrix, columns, _ = cells
    held_out = rows(columns, slice(200, None))
    design = fitted.design(space, matrix[200:], held_out)
    assert np.isnan(design[:, -1]).any()  # the missing and infinite scores take the NaN path
    path = fitted.save(tmp_path / "ranker.json", {"cv": {"spearman_rho": float("nan")}})
    document = json.loads(path.read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN, no Infinity
    assert document["format"] == FORMAT and document["space"]["name"] == "nb201"
    assert document["columns"][-2:] == list(FEATURES) and document["train_rows"] == 200
    assert document["metrics"] == {"cv": {"spearman_rho": None}}
    loaded = LearnedRanker.load(path, space)
    expected = fitted.model_.predict(design)
    assert np.allclose(loaded.predict(space, matrix[200:], held_out), expected, rtol=0, atol=1e-9)
    assert np.allclose(fitted.predict(space, matrix[200:], held_out), expected, rtol=0, atol=1e-9)
    assert loaded.get_params() == {**fitted.get_params(), "features": list(FEATURES)}
    noise_splits = [(t.feature == 31) & ~t.is_leaf for t in loaded.trees_]
    assert any(split.any() for split in noise_splits)  # some tree routes the missing noise scores


def test_a_split_on_missing_alone_round_trips_as_a_null_threshold(space, cells, tmp_path):
    matrix, _, truth = cells
    seen = {"seen": np.where(truth > np.median(truth), 1.0, np.nan)}  # only "is it missing" tells anything
    ranker = LearnedRanker(["seen"], max_iter=5).fit(space, matrix, seen, truth)
    document = json.loads(ranker.save(tmp_path / "ranker.json").read_text())
    assert None in document["model"]["trees"][0]["threshold"]
    expected = ranker.model_.predict(ranker.design(space, matrix, seen))
    assert np.allclose(LearnedRanker.load(tmp_path / "ranker.json", space).predict(space, matrix, seen), expected,
                       rtol=0, atol=1e-9)


def test_the_same_seed_fits_the_same_trees(space, cells, fitted):
    matrix, columns, truth = cells
    again = LearnedRanker(FEATURES, max_iter=50).fit(space, matrix[:200], rows(columns, slice(200)), truth[:200])
    assert np.array_equal(again.predict(space, matrix, columns), fitted.predict(space, matrix, columns))


def test_a_ranker_of_another_space_is_refused(space, cells, fitted, tmp_path):
    path = fitted.save(tmp_path / "ranker.json")
    with pytest.raises(ConfigError, match=r"ranker\.json: a ranker of space 'nb201' .* cannot rank space 'tiny'"):
        LearnedRanker.load(path, load_space("tiny"))
    document = json.loads(path.read_text())
    document["space"]["digest"] = "0" * 16  # same name, edited definition
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="the space name and definition must match"):
        LearnedRanker.load(path, space)
    with pytest.raises(ConfigError, match="cannot rank space 'tiny'"):
        fitted.predict(load_space("tiny"), load_space("tiny").index_matrix([load_space("tiny").min()]), cells[1])


@pytest.mark.parametrize("edit, message", [
    (lambda d: {**d, "format": "raynas-ranker/0"},
     "not a ranker file: format must be 'raynas-ranker/1', got 'raynas-ranker/0'"),
    (lambda d: [d], "format must be 'raynas-ranker/1', got 'list'"),
    (lambda d: {**d, "model": {"baseline": 0.0}}, r"malformed ranker file \(KeyError: 'trees'\)"),
    (lambda d: {**d, "params": {"nope": 1}}, "malformed ranker file .*nope"),
    (lambda d: {**d, "model": {**d["model"], "trees": [{**d["model"]["trees"][0], "left": [0] * 7}]}},
     "children must come after their parent"),
    (lambda d: {**d, "features": ["signal"]}, "columns must be the space's one-hot columns"),
])
def test_a_malformed_file_is_one_clear_error_naming_it(fitted, space, tmp_path, edit, message):
    path = fitted.save(tmp_path / "ranker.json")
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(ConfigError, match=f"ranker.json: .*{message}"):
        LearnedRanker.load(path, space)


def test_a_missing_or_non_json_file_is_refused(space, tmp_path):
    with pytest.raises(ConfigError, match="nope.json: cannot read a ranker file"):
        LearnedRanker.load(tmp_path / "nope.json", space)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: cannot read a ranker file"):
        LearnedRanker.load(tmp_path / "bad.json", space)


def test_missing_features_and_bad_targets_are_refused(space, cells):
    matrix, columns, truth = cells
    with pytest.raises(ConfigError, match=r"feature column\(s\) \['nope'\] not given"):
        LearnedRanker(["nope"]).fit(space, matrix, columns, truth)
    with pytest.raises(ConfigError, match="targets must be 300 finite numbers"):
        LearnedRanker(FEATURES).fit(space, matrix, columns, np.where(truth > 80, np.nan, truth))
    with pytest.raises(ConfigError, match="target must be one of"):
        LearnedRanker(FEATURES, target="loss").fit(space, matrix, columns, truth)


# --- judging ------------------------------------------------------------------------------------
def test_top_precision_counts_the_true_top_among_the_predicted_top_with_ties_in_expectation():
    truth = np.arange(40.0)  # top 5% of 40: the 2 best
    assert top_precision(truth, truth) == 1.0 and top_precision(-truth, truth) == 0.0
    assert top_precision(np.ones(40), truth) == pytest.approx(2 / 40)
    assert ranking_metrics(truth, truth)["spearman_rho"] == pytest.approx(1.0)


def test_cross_validation_and_holdout_report_metrics_in_range(space, cells):
    matrix, columns, truth = cells
    cv = cross_validate({"features": FEATURES, "max_iter": 50}, space, matrix, columns, truth, folds=3)
    assert cv["folds"] == 3 and 0.5 < cv["spearman_rho"] <= 1 and 0.3 < cv["kendall_tau"] <= 1
    assert 0 <= cv["top_precision"] <= 1
    ranker, held = holdout(LearnedRanker(FEATURES, max_iter=50), space, matrix, columns, truth, train_n=100)
    assert (held["train_rows"], held["test_rows"]) == (100, 200) and ranker.n_train_ == 100
    assert 0.5 < held["spearman_rho"] <= 1 and 0 <= held["top_precision"] <= 1
    with pytest.raises(ConfigError, match="2 <= folds <= rows, got folds=301 for 300 rows"):
        cross_validate(LearnedRanker(FEATURES), space, matrix, columns, truth, folds=301)


# --- the command line ---------------------------------------------------------------------------
@pytest.fixture
def tables(space, cells, tmp_path):
    matrix, columns, truth = cells
    keys = [space.key(a) for a in space.from_index_matrix(matrix)]
    pd.DataFrame({"arch": keys, "note": "x", "acc": truth}).to_csv(tmp_path / "reference.csv", index=False)
    pd.DataFrame({"arch": keys, **columns}).to_parquet(tmp_path / "scores.parquet")
    return tmp_path


def fit_argv(folder, *extra):
    return ["ranker", "fit", "nb201", "--reference", str(folder / "reference.csv"), "--scores",
            str(folder / "scores.parquet"), "--features", "signal,noise", "--out", str(folder / "r.json"), *extra]


def test_ranker_fit_prints_cv_metrics_and_writes_a_loadable_file(tables, space, capsys):
    assert main(fit_argv(tables, "--folds", "3", "--train-cells", "60")) == 0
    out = capsys.readouterr().out
    assert "300 cells of nb201 have a reference accuracy (acc)" in out
    assert "3-fold CV on 60 cells: Spearman" in out and "held out 240 cells" in out
    ranker = LearnedRanker.load(tables / "r.json", space)
    assert ranker.n_train_ == 60 and set(ranker.metrics_) == {"cv", "holdout"}


def write_csv(path, frame):
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, expected", [
    ("no accuracy column", "no numeric accuracy column besides `arch`"),
    ("named column absent", "missing column(s) ['nope']"),
    ("missing feature", "no column for feature(s) ['noise']"),
    ("unknown space", "unknown space 'nope'"),
    ("arch of another space", "scores.parquet: row 1:"),
    ("fewer cells than folds", "share 4 cells; --folds 5 needs at least 5"),
])
def test_bad_input_exits_2_with_one_line(tables, space, capsys, case, expected):
    argv = fit_argv(tables)
    scores = pd.read_parquet(tables / "scores.parquet")
    if case == "no accuracy column":
        write_csv(tables / "reference.csv", pd.read_csv(tables / "reference.csv")[["arch", "note"]])
    elif case == "named column absent":
        argv += ["--accuracy-column", "nope"]
    elif case == "missing feature":
        scores.drop(columns="noise").to_parquet(tables / "scores.parquet")
    elif case == "unknown space":
        argv[2] = "nope"
    elif case == "arch of another space":
        tiny = load_space("tiny")
        scores.assign(arch=[tiny.key(tiny.min())] * len(scores)).to_parquet(tables / "scores.parquet")
    else:
        scores.head(4).to_parquet(tables / "scores.parquet")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not (tables / "r.json").exists()
