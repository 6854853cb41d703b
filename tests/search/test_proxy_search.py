"""`raynas search --evaluator proxy`: a search that ranks nb201 children by the BPE proxy, no checkpoint."""

import re

import pandas as pd
import pytest
import ray

from raynas.bpe import ProxySetting, read_proxy_rows
from raynas.bpe.search_evaluator import PROXY_FOLDER, ProxyEvaluator, proxy_subject
from raynas.cli import main
from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.results import ResultStore
from raynas.results.report import RESULTS_DIR
from raynas.search.study import SearchConfig, search
from raynas.space import load_space

TINY = {"channels": 4, "cells_per_stage": 1, "resolution": 8, "epochs": 1, "batch_size": 32, "lr": 0.05}
"""A proxy that trains an nb201 child on synthetic data in well under a second."""


@pytest.fixture
def setting_file(tmp_path):
    path = tmp_path / "setting.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()))
    return path


def _args(setting_file, out, *extra):
    return ["search", "nb201", "--evaluator", "proxy", "--setting", str(setting_file), "--data", "synthetic",
            "--sampler", "random", "--trials", "6", "--search-batch", "3", "--actor-cpus", "1", "--out", str(out),
            *extra]


def _rows(out):
    return ResultStore(out / RESULTS_DIR, load_space("nb201")).to_pandas().sort_values("trial")


# --- bad input: one line, before Ray starts ----------------------------------------------------
@pytest.mark.parametrize("extra, text, message", [
    ((), "epoch: 1\n", r"setting.yaml: unknown key\(s\) \['epoch'\]; valid keys"),
    ((), "lr: -0.1\n", r"setting.yaml: lr must be a finite number > 0, got -0.1"),
    (("--objectives", "bn_score,flops"), None,
     r"the proxy evaluator measures the accuracy objective: objectives \['bn_score', 'flops'\] have none"),
])
def test_bad_input_is_one_line_before_ray(setting_file, tmp_path, capsys, extra, text, message):
    if text is not None:
        setting_file.write_text(text)
    assert main(_args(setting_file, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("raynas search: error: "), err
    assert re.search(message, err), err
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def test_a_space_the_proxy_cannot_map_is_refused(setting_file, tmp_path, capsys):
    args = _args(setting_file, tmp_path / "out")
    args[1] = "tiny"
    assert main(args) == 2
    assert "proxy supports nb201 spaces for now; space 'tiny' is family 'mobilenet'" in capsys.readouterr().err
    assert not ray.is_initialized()


# --- with Ray ----------------------------------------------------------------------------------
def test_cli_search_ranks_by_the_proxy_and_resumes_without_retraining(ray_local, setting_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(setting_file, out)) == 0
    assert "6 trials in" in capsys.readouterr().out
    rows = _rows(out)
    assert rows["trial"].tolist() == list(range(6))  # exactly one row per trial
    ok = rows[rows["status"] == "ok"]
    assert len(ok) == rows["arch"].nunique() and rows["status"].isin(["ok", "duplicate"]).all()
    assert rows["evaluator"].eq("proxy").all() and ok["split"].eq("val").all() and ok["epochs"].eq(1).all()
    assert ok["accuracy"].between(0, 1).all() and (ok["eval_seconds"] > 0).all() and (rows["flops"] > 0).all()
    assert rows["checkpoint_id"].str.startswith("proxy@c4-n1-r8-e1-").all()
    proxy = read_proxy_rows(out / PROXY_FOLDER)
    assert sorted(proxy["arch"]) == sorted(ok["arch"])  # each distinct child trained once, its row kept
    accuracy = dict(zip(proxy["arch"], proxy["proxy_accuracy"]))
    assert all(accuracy[a] == v for a, v in zip(ok["arch"], ok["accuracy"]))  # the search's accuracy is the proxy's

    assert main(["report", str(out)]) == 0  # the report picks the proxy rows and their accuracy
    assert "evaluator proxy, objectives accuracy (max), flops (min)" in capsys.readouterr().out

    assert main(_args(setting_file, out, "--trials", "9")) == 0  # resumed: 3 more trials, old children not retrained
    rows = _rows(out)
    assert rows["trial"].tolist() == list(range(9))
    again = read_proxy_rows(out / PROXY_FOLDER)
    assert len(again) == rows.loc[rows["status"] == "ok", "arch"].nunique() and not again["arch"].duplicated().any()
    pd.testing.assert_frame_equal(again.iloc[:len(proxy)], proxy)

    setting_file.write_text(setting_file.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(_args(setting_file, out, "--trials", "9")) == 2  # another proxy is another search
    assert "checkpoint_id" in capsys.readouterr().err
    pd.testing.assert_frame_equal(read_proxy_rows(out / PROXY_FOLDER), again)  # refused before it wrote anything
    pd.testing.assert_frame_equal(_rows(out), rows)


def test_python_search_with_a_proxy_subject(ray_local, tmp_path):
    space, setting, data = load_space("nb201"), ProxySetting(**TINY), load_data("synthetic")
    subject = proxy_subject(space, setting, data)
    evaluator = ProxyEvaluator(subject, data, tmp_path)
    result = search(subject, evaluator, tmp_path, SearchConfig(objectives=("accuracy", "params"), sampler="random",
                                                               trials=4, batch_size=4, accuracy_evaluator="proxy"),
                    progress=False)
    assert len(result.study.trials) == 4 and all(t.values[0] <= 1 for t in result.study.trials)
    with pytest.raises(ConfigError, match="accuracy_evaluator must be one of"):
        SearchConfig(objectives=("accuracy", "flops"), accuracy_evaluator="oracle")
