"""The paper's BPE: MIP over standalone proxy settings, each trial training every reference cell on its own."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from raynas.bpe import ProxySetting, Reference, load_proxy_setting, rank_correlation, read_trials, run_bpe
from raynas.bpe.mip import search_reference
from raynas.bpe.proxy import PROXY_SCHEMA
from raynas.bpe.space import STANDALONE_HYPERPARAMETERS, bpe_space_from_dict
from raynas.bpe.standalone import StandaloneTask, evaluate_standalone_setting
from raynas.cli import main
from raynas.data import load_data
from raynas.errors import ConfigError, SpaceError
from raynas.space import load_space

CELLS = {  # NAS-Bench-201 cells with their 200-epoch CIFAR-10 accuracy (nb201_cifar10_dev.csv)
    "|none~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|": 91.99,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|": 10.0,
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|": 92.49,
    "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|avg_pool_3x3~1|none~2|": 51.09,
}
STANDALONE = {
    "name": "tiny_standalone", "target_space": "nb201", "data": "synthetic", "proxy": "standalone", "seed": 0,
    "hyperparameters": {"channels": [2, 4], "cells_per_stage": [1], "resolution": [8], "epochs": [1, 2],
                        "batch_size": [32], "lr": [0.05], "data_fraction": [0.5, 1.0], "augment": [False]},
    "mip": {"rounds": 2, "trials_per_round": 2, "metric": "spearman_rho"},
}


@pytest.fixture(scope="module")
def nb201():
    return load_space("nb201")


def reference(space) -> Reference:
    keys = [space.key(space.arch(k)) for k in CELLS]
    return Reference(space.name, tuple(space.arch(k) for k in keys), tuple(keys), tuple(CELLS.values()), "cells")


def test_a_standalone_file_has_its_own_hyperparameters_and_defaults():
    bpe = bpe_space_from_dict(STANDALONE)
    assert bpe.proxy == "standalone" and bpe.names == tuple(STANDALONE_HYPERPARAMETERS)
    assert bpe.free == ("channels", "epochs", "data_fraction")
    assert bpe.fixed["weight_decay"] == 3e-4  # left out: ProxySetting's default (the paper's BPE1)
    assert bpe.estimator_for(None) == "proxy_accuracy" and bpe.mip.column == "rho"
    assert (bpe.fixed["cutout"], bpe.fixed["amp"]) == (0, "off")
    searched = bpe_space_from_dict({**STANDALONE, "hyperparameters": {"cutout": [0, 4], "amp": ["off", "bf16"]}})
    assert {"cutout", "amp"} <= set(searched.free)


@pytest.mark.parametrize("change, message", [
    ({"target_space": "tiny"}, r"<dict>: proxy: standalone proxies support nb201 spaces for now; target_space 'tiny'"),
    ({"estimator": "bn_score"}, r"estimator: a standalone proxy ranks by each architecture's val top-1"),
    ({"hyperparameters": {"width_multiplier": [0.5]}},
     r"hyperparameters: unknown hyper-parameter\(s\) \['width_multiplier'\] for a standalone proxy; valid"),
    ({"hyperparameters": {"augment": [True, "yes"]}}, r"hyperparameters.augment: choices must be distinct true/false"),
    ({"hyperparameters": {"resolution": [2, 8]}}, r"hyperparameters.resolution: every choice must be >= 4"),
    ({"hyperparameters": {"cutout": [-1, 4]}}, r"hyperparameters.cutout: every choice must be >= 0"),
    ({"hyperparameters": {"amp": [False, "bf16"]}}, r"hyperparameters.amp: every choice must be one of \['off', 'bf16'\]"),
    ({"proxy": "both"}, r"proxy: must be one of \['supernet', 'standalone'\], got 'both'"),
    ({"mip": {"metric": "pearson"}}, r"mip: metric must be one of \['kendall_tau', 'spearman_rho'\], got 'pearson'"),
])
def test_standalone_file_errors_name_the_key_and_rule(change, message):
    with pytest.raises(SpaceError, match=message):
        bpe_space_from_dict({**STANDALONE, **change})


@pytest.mark.parametrize("change, message", [
    ({"rank_by": "loss"}, r"^<dict>: rank_by must be one of \['accuracy', 'tse', 'tse_e'\], got 'loss'$"),
    ({"proxy": "supernet", "target_space": "tiny", "hyperparameters": {"epochs": [1]}, "rank_by": "tse"},
     r"^<dict>: rank_by ranks the architectures of a standalone proxy \(proxy: standalone\); a supernet proxy"),
])
def test_rank_by_is_one_of_three_on_a_standalone_proxy_only(change, message):
    assert bpe_space_from_dict(STANDALONE).rank_by == "accuracy"  # the default: val top-1, as before
    assert bpe_space_from_dict({**STANDALONE, "rank_by": "tse_e"}).estimator_for(None) == "tse_e"
    with pytest.raises(ConfigError, match=message):
        bpe_space_from_dict({**STANDALONE, **change})


def test_cli_refuses_an_unknown_rank_by_in_one_line(tmp_path, capsys):
    (tmp_path / "bpe.yaml").write_text(json.dumps({**STANDALONE, "rank_by": "loss"}))
    pd.DataFrame({"arch": list(CELLS), "top1": list(CELLS.values())}).to_csv(tmp_path / "dev.csv", index=False)
    code = main(["bpe", str(tmp_path / "bpe.yaml"), "--reference", str(tmp_path / "dev.csv"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "raynas bpe: error: bpe.yaml: rank_by must be one of ['accuracy', 'tse', 'tse_e'], got 'loss'\n"


def test_a_trial_ranked_by_tse_correlates_the_negated_loss_sums(tmp_path, one_thread, nb201):
    setting = ProxySetting(channels=4, cells_per_stage=1, resolution=8, epochs=1, batch_size=32, lr=0.05).to_dict()
    task = StandaloneTask(nb201, reference(nb201), str(tmp_path), rank_by="tse")
    row = evaluate_standalone_setting(task, setting, load_data("synthetic"), "trial")
    rows = pd.read_parquet(tmp_path / "trial.parquet")
    assert row["status"] == "ok" and row["estimator"] == "tse" and np.isfinite(rows["tse"]).all()
    tau, rho = rank_correlation(-rows["tse"].to_numpy(), np.array(list(CELLS.values())))
    assert (row["tau"], row["rho"]) == pytest.approx((tau, rho))


def test_a_count_of_reference_archs_samples_a_larger_table_seeded(nb201):
    bpe = bpe_space_from_dict({**STANDALONE, "reference_archs": 3})
    picked = search_reference(bpe, reference(nb201))
    assert len(picked) == 3 and set(picked.keys) < set(reference(nb201).keys)
    assert search_reference(bpe, reference(nb201)).keys == picked.keys
    assert len(search_reference(bpe_space_from_dict({**STANDALONE, "reference_archs": 9}), reference(nb201))) == 4


@pytest.mark.slow
def test_mip_over_standalone_settings_end_to_end(ray_local, tmp_path, nb201):
    bpe = bpe_space_from_dict(STANDALONE)
    result = run_bpe(bpe, reference(nb201), tmp_path / "out", verbose=False)

    trials = read_trials(tmp_path / "out").to_pandas()
    assert len(trials) == 4 and trials.groupby("round").size().to_dict() == {0: 2, 1: 2}
    assert set(trials["status"]) <= {"ok", "degenerate"} and trials["estimator"].eq("proxy_accuracy").all()
    assert trials["num_reference"].eq(4).all() and (trials["seconds_per_arch"] > 0).all()
    assert np.allclose(trials["cost_seconds"], 4 * trials["seconds_per_arch"]) and trials["mode"].isna().all()
    assert (trials["train_seconds"] > 0).all()  # the wall time of the whole trial
    decision = result.rounds[0].decision
    assert decision.param in bpe.free and (trials[trials["round"] == 1][decision.param] == decision.value).all()
    assert set(result.setting) == set(STANDALONE_HYPERPARAMETERS) and result.sampling is None
    assert math.isfinite(result.rho) or result.rho != result.rho  # degenerate trials may leave it NaN

    # every cell's accuracy behind each correlation is kept, one Parquet file per trial
    files = sorted((tmp_path / "out" / "runs").glob("*.parquet"))
    assert len(files) == 4
    rows = pd.concat([pd.read_parquet(f) for f in files])
    assert list(rows.columns) == PROXY_SCHEMA.names and len(rows) == 16
    assert set(rows["arch"]) == set(reference(nb201).keys)

    # the chosen setting is a proxy setting `raynas proxy --setting` takes as it is
    saved = json.loads((tmp_path / "out" / "bpe_result.json").read_text())
    assert saved["proxy"] == "standalone" and saved["metric"] == "spearman_rho"
    setting = load_proxy_setting(tmp_path / "out" / "bpe_result.json", nb201)
    assert {k: getattr(setting, k) for k in STANDALONE_HYPERPARAMETERS} == result.setting and setting.seed == 0


def test_cli_holds_cells_out_of_the_search(ray_local, tmp_path, nb201, capsys):
    spec = {**STANDALONE, "hyperparameters": {**STANDALONE["hyperparameters"], "channels": [4], "epochs": [2],
                                               "lr": [0.1], "data_fraction": [1.0]},
            "mip": {"rounds": 1, "trials_per_round": 1}, "rank_by": "tse"}
    (tmp_path / "bpe.yaml").write_text(json.dumps(spec))
    table = pd.DataFrame({"arch": list(CELLS), "top1": list(CELLS.values())})
    table.to_csv(tmp_path / "dev.csv", index=False)
    code = main(["bpe", str(tmp_path / "bpe.yaml"), "--reference", str(tmp_path / "dev.csv"), "--accuracy-column",
                 "top1", "--held-out", "1", "--out", str(tmp_path / "out")])
    assert code == 0
    held = pd.read_csv(tmp_path / "out" / "held_out.csv")
    trained = pd.concat([pd.read_parquet(f) for f in (tmp_path / "out" / "runs").glob("*.parquet")])
    assert len(held) == 1 and len(trained) == 3 and held["arch"][0] not in set(trained["arch"])
    assert read_trials(tmp_path / "out").column("estimator").to_pylist() == ["tse"]
    assert json.loads((tmp_path / "out" / "bpe_result.json").read_text())["estimator"] == "tse"
    out = capsys.readouterr().out
    assert "held out:" in out and out.rstrip().endswith("--rank-by tse")
