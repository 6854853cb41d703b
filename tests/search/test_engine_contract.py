"""One contract for both search engines: the ask/tell loop (`search`) and the Ray Tune adapter
(`tune_search`) run through one `SearchRunner`: the same trials from the same seed, each trial
ends with exactly one row, the rows say the same, and `run.json` records the same model and
search."""

import json

import pytest

from raynas.errors import ConfigError
from raynas.search.study import SearchConfig, search
from raynas.search.tune_adapter import tune_search

LIMIT = 1.5e5  # about 40% of the tiny space's children are feasible
COLUMNS = ["trial", "arch", "flops", "params", "bn_score"]


def run(engine, trained, pool, out, seed):
    """The engine's rows, sorted by trial; its run.json is in ``out``."""
    config = SearchConfig(objectives=("bn_score", "flops"), constraints=(f"flops<={LIMIT:g}",), sampler="random",
                          trials=8, batch_size=4, seed=seed, top_k=0, run_id="contract")
    if engine == "ask/tell":
        result = search(trained, pool, out, config, progress=False)
    else:
        result = tune_search(trained, pool, out, config, max_concurrent=2)
    return result.store.to_pandas().sort_values("trial").reset_index(drop=True)


@pytest.fixture(scope="module")
def folders(trained, pool, tmp_path_factory):
    return {(engine, seed, again): tmp_path_factory.mktemp("r")
            for engine in ("ask/tell", "tune") for seed, again in ((0, 0), (0, 1), (1, 0))}


@pytest.fixture(scope="module")
def rows(trained, pool, folders):
    return {(engine, seed, again): run(engine, trained, pool, out, seed)
            for (engine, seed, again), out in folders.items()}


@pytest.mark.parametrize("engine", ["ask/tell", "tune"])
def test_one_row_per_trial_and_same_seed_same_rows(rows, engine):
    first, again, other = rows[(engine, 0, 0)], rows[(engine, 0, 1)], rows[(engine, 1, 0)]
    for table in (first, again, other):
        assert table["trial"].tolist() == list(range(8))  # exactly one row per trial, no gap
        assert set(table["status"]) <= {"ok", "infeasible", "duplicate"}
        feasible = table["status"] != "infeasible"
        assert (table.loc[feasible, "flops"] <= LIMIT).all() and table.loc[feasible, "bn_score"].notna().all()
    assert first[COLUMNS].equals(again[COLUMNS])
    assert not first["arch"].equals(other["arch"])  # another seed, other trials


def test_both_engines_run_the_same_trials(rows):
    assert rows[("ask/tell", 0, 0)][COLUMNS].equals(rows[("tune", 0, 0)][COLUMNS])


def test_both_engines_record_the_same_model_and_search(rows, folders, trained):
    ask_tell, tune = (json.loads((folders[(engine, 0, 0)] / "run.json").read_text()) for engine in ("ask/tell", "tune"))
    assert ask_tell["model"] == tune["model"] == trained.model.to_dict()
    assert ask_tell["search"] == tune["search"] and ask_tell["checkpoint_id"] == tune["checkpoint_id"]
    assert tune["engine"] == "ray.tune" and "space" not in tune  # the space lives in the record, once


def test_infeasible_rows_keep_no_score_in_either_engine(rows):
    for engine in ("ask/tell", "tune"):
        table = rows[(engine, 0, 0)]
        infeasible = table[table["status"] == "infeasible"]
        assert len(infeasible) and infeasible["bn_score"].isna().all()  # the PENALTY told to Optuna is not stored


def test_the_tune_adapter_refuses_the_proxy_evaluator(trained, pool, tmp_path):
    config = SearchConfig(objectives=("accuracy", "flops"), accuracy_evaluator="proxy", trials=2)
    with pytest.raises(ConfigError, match="the proxy evaluator runs with the ask/tell search"):
        tune_search(trained, pool, tmp_path, config)


def test_both_engines_search_a_fused_estimator_alike(trained, pool, tmp_path):
    """An estimate search's fusion is fitted on one seeded reference: both engines give each child the same value."""
    config = SearchConfig(objectives=("estimate", "flops"), estimator="fuse:bn_score+params", estimator_reference=8,
                          constraints=(f"flops<={LIMIT:g}",), sampler="random", trials=6, batch_size=3, top_k=0,
                          run_id="estimate")
    tables = [search(trained, pool, tmp_path / "ask", config, progress=False).store.to_pandas(),
              tune_search(trained, pool, tmp_path / "tune", config, max_concurrent=2).store.to_pandas()]
    ask_tell, tune = (t.sort_values("trial").reset_index(drop=True)[["trial", "arch", "flops", "status", "estimate"]]
                      for t in tables)
    assert ask_tell.equals(tune) and set(ask_tell["status"]) <= {"ok", "infeasible", "duplicate"}
    assert ask_tell.loc[ask_tell["status"] != "infeasible", "estimate"].notna().all()
