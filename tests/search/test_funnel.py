"""The multi-fidelity funnel (``raynas search SPACE --budget-cpu-s``) and searches over a pool of
architectures (``--pool``): bookkeeping, the budget, resume, and bad input."""

import json

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from raynas.cli import main
from raynas.errors import ConfigError
from raynas.search.arch_pool import ArchPoolSampler
from raynas.search.define import suggest_arch
from raynas.bpe.funnel import FUNNEL_FILE, FunnelConfig
from raynas.space import load_space, space_from_dict

SMALL_NB201 = {"name": "nb201_small", "family": "nb201", "ops": ["none", "skip_connect", "avg_pool_3x3",
               "nor_conv_1x1", "nor_conv_3x3"], "channels": 4, "cells_per_stage": 1, "resolution": 16}
SPACE = space_from_dict(SMALL_NB201)
FAST = ["--channels", "4", "--cells-per-stage", "1", "--resolution", "8", "--data-fraction", "0.25",
        "--batch-size", "32"]


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "nb201_small.yaml"
    path.write_text(yaml.safe_dump(SMALL_NB201))
    return path


def funnel(space_file, out, *flags, budget="12"):
    return main(["search", str(space_file), "--budget-cpu-s", budget, "--data", "digits", "--prescreen", "24",
                 "--evaluator", "fuse:synflow+flops", "--probe-images", "8", "--candidates", "8", "--eta", "2",
                 "--rung-epochs", "1,2", "--actor-cpus", "1", *FAST, "--out", str(out), *flags])


@pytest.fixture(scope="module")
def searched(ray_local, space_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("funnel")
    assert funnel(space_file, out) == 0
    return out


def test_every_candidate_has_one_row_per_rung_and_rungs_keep_the_best(searched):
    rows = pd.read_parquet(searched / FUNNEL_FILE)
    assert not rows.duplicated(["arch", "stage", "rung"]).any()  # no cell trained twice at one rung
    prescreened = rows[rows["stage"] == "prescreen"]
    rung0, rung1 = (rows[(rows["stage"] == "rung") & (rows["rung"] == r)] for r in (0, 1))
    assert len(prescreened) >= 1 and len(rung0) >= 2 and len(rung1) >= 1
    best_prescreened = prescreened.sort_values("score", ascending=False, kind="stable")["arch"].tolist()
    assert sorted(rung0["arch"]) == sorted(best_prescreened[:len(rung0)])  # best-first, none skipped
    promoted = rung0.sort_values("score", ascending=False, kind="stable")["arch"].tolist()[:len(rung1)]
    assert sorted(rung1["arch"]) == sorted(promoted)
    assert set(rung1["arch"]) <= set(rung0["arch"])
    assert len(rung1) <= int(np.ceil(len(rung0) / 2))


def test_chosen_json_names_the_best_of_the_highest_rung_and_its_cost(searched):
    chosen = json.loads((searched / "chosen.json").read_text())
    rows = pd.read_parquet(searched / FUNNEL_FILE)
    top = rows[(rows["stage"] == "rung") & (rows["rung"] == rows["rung"].max())]
    assert chosen["arch"] == top.loc[top["score"].idxmax(), "arch"]
    assert chosen["cpu_seconds"] == pytest.approx(rows["cpu_seconds"].sum())
    assert [r["trained"] for r in chosen["rungs"]] == [int((rows["rung"] == r).sum()) for r in (0, 1)]
    assert chosen["prescreen"]["cells"] == int((rows["stage"] == "prescreen").sum())
    assert chosen["flops"] > 0 and chosen["params"] > 0


def test_the_search_stops_within_one_candidates_cost_of_its_budget(searched):
    rows = pd.read_parquet(searched / FUNNEL_FILE)
    chosen = json.loads((searched / "chosen.json").read_text())
    dearest = rows.loc[rows["stage"] == "rung", "cpu_seconds"].max()
    assert chosen["cpu_seconds"] <= chosen["budget_cpu_s"] + dearest
    prescreen = rows.loc[rows["stage"] == "prescreen", "cpu_seconds"].sum()
    assert prescreen <= 0.4 * chosen["budget_cpu_s"] + rows.loc[rows["stage"] == "prescreen", "cpu_seconds"].max() * 64


def test_a_rerun_trains_nothing_again_and_chooses_the_same(searched, space_file, capsys):
    def rows():
        return pd.read_parquet(searched / FUNNEL_FILE).sort_values(["stage", "rung", "arch"], ignore_index=True)

    before = rows()
    chosen = json.loads((searched / "chosen.json").read_text())
    assert funnel(space_file, searched) == 0
    pd.testing.assert_frame_equal(before, rows(), check_exact=False, atol=1e-3)  # the same rows, the same CPU-seconds: nothing trained again
    assert json.loads((searched / "chosen.json").read_text())["arch"] == chosen["arch"]
    assert f"chose {chosen['arch']}" in capsys.readouterr().out


def test_another_setting_is_refused_in_a_folder_that_holds_a_search(searched, space_file, capsys):
    before = (searched / FUNNEL_FILE).read_bytes()
    assert funnel(space_file, searched, budget="13") == 2
    assert "holds a search with other settings (config)" in capsys.readouterr().err
    assert (searched / FUNNEL_FILE).read_bytes() == before


def test_a_random_funnel_over_a_pool_spends_nothing_on_a_prescreen_and_stays_in_the_pool(ray_local, space_file,
                                                                                         tmp_path):
    pool = [SPACE.key(a) for a in SPACE.from_index_matrix(SPACE.sample_index_matrix(10, seed=3))]
    pd.DataFrame({"arch": pool}).to_csv(tmp_path / "pool.csv", index=False)
    out = tmp_path / "out"
    assert main(["search", str(space_file), "--budget-cpu-s", "3", "--data", "digits", "--evaluator", "random",
                 "--rung-epochs", "1", *FAST, "--pool", str(tmp_path / "pool.csv"), "--out", str(out)]) == 0
    rows = pd.read_parquet(out / FUNNEL_FILE)
    assert set(rows["arch"]) <= set(pool)
    assert rows.loc[rows["stage"] == "prescreen", "cpu_seconds"].sum() == 0
    assert json.loads((out / "chosen.json").read_text())["arch"] in pool


@pytest.mark.parametrize("content, message", [
    ("arch\n", "no architecture keys"),
    ("cell\n|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|\n", "no `arch` column"),
    ("arch\n[3]-[3]\n", "pool.csv"),
])
def test_a_bad_pool_is_refused_before_anything_starts(tmp_path, space_file, content, message, capsys):
    (tmp_path / "pool.csv").write_text(content)
    refused(capsys, message, "search", str(space_file), "--budget-cpu-s", "10", "--pool", str(tmp_path / "pool.csv"),
            "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def refused(capsys, message, *argv):
    """``raynas ARGV`` exits 2 with one error line that says ``message``."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_pool_of_another_spaces_architectures_is_refused(tmp_path, space_file, capsys):
    tiny = load_space("tiny")
    pd.DataFrame({"arch": [tiny.key(tiny.sample(0))]}).to_parquet(tmp_path / "pool.parquet")
    refused(capsys, "pool.parquet", "search", str(space_file), "--evaluator", "naswot", "--pool",
            str(tmp_path / "pool.parquet"), "--trials", "1", "--out", str(tmp_path / "out"))


@pytest.mark.parametrize("settings, message", [
    ({"budget_cpu_s": 0}, "positive number"), ({"eta": 1}, "eta"), ({"rung_epochs": (3, 1)}, "increasing"),
    ({"prescreen_share": 1.0}, "prescreen_share"), ({"estimator": "magic"}, "unknown estimator"),
])
def test_funnel_settings_are_checked(settings, message):
    with pytest.raises(ConfigError, match=message):
        FunnelConfig(**{"budget_cpu_s": 10.0, **settings})


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_the_pool_sampler_proposes_each_member_once(sampler):
    from raynas.search.samplers import make_sampler

    pool = [SPACE.key(a) for a in SPACE.from_index_matrix(SPACE.sample_index_matrix(40, seed=1))]
    pool = list(dict.fromkeys(pool))[:25]
    study = optuna.create_study(directions=["maximize"],
                                sampler=ArchPoolSampler(make_sampler(sampler, 0, 8), SPACE, pool, seed=0))
    seen = []
    for _ in range(len(pool)):
        trial = study.ask()
        key = SPACE.key(suggest_arch(trial, SPACE))
        study.tell(trial, float(len(seen) % 7))
        seen.append(key)
    assert sorted(seen) == sorted(pool)


def test_a_pool_search_rejects_more_trials_than_the_pool_and_a_prescreen(tmp_path, space_file, capsys):
    pool = tmp_path / "pool.csv"
    pd.DataFrame({"arch": [SPACE.key(SPACE.sample(0))]}).to_csv(pool, index=False)
    refused(capsys, "more than the 1 architectures", "search", str(space_file), "--evaluator", "naswot", "--pool",
            str(pool), "--trials", "5", "--out", str(tmp_path / "out"))
    refused(capsys, "prescreen", "search", str(space_file), "--evaluator", "naswot", "--pool", str(pool),
            "--trials", "1", "--prescreen", "10", "--out", str(tmp_path / "out"))


def test_an_optuna_search_over_a_pool_evaluates_only_its_members_once_each(ray_local, space_file, tmp_path):
    pool = list(dict.fromkeys(SPACE.key(a) for a in SPACE.from_index_matrix(SPACE.sample_index_matrix(12, seed=5))))
    pd.DataFrame({"arch": pool}).to_parquet(tmp_path / "pool.parquet")
    out = tmp_path / "search"
    assert main(["search", str(space_file), "--evaluator", "naswot", "--pool", str(tmp_path / "pool.parquet"),
                 "--data", "synthetic", "--probe-images", "8", "--trials", str(len(pool)), "--search-batch", "4",
                 "--sampler", "nsga2", "--population", "4", "--actor-cpus", "0.5", "--out", str(out)]) == 0
    rows = pd.read_parquet(out / "results")
    searched = rows[rows["evaluator"] == "estimate"]
    assert sorted(searched["arch"]) == sorted(pool)  # every member once, nothing outside the pool
    assert json.loads((out / "run.json").read_text())["runs"]["search"]["pool"].startswith(f"{len(pool)}:")
