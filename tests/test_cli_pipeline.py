"""The commands users run, end to end on the embedded default: real Ray, Parquet and training."""

import json
import re

import pandas as pd
import pytest
import torch

from raynas.cli import main
from raynas.protocol.targets import budget_shortlist
from raynas.space import load_space
from raynas.supernet import load_child
from raynas.train import Scaling, TrainConfig, train_supernet


@pytest.fixture(scope="module")
def tiny_checkpoint(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    assert main(["train", "tiny", "--data", "digits", "--epochs", "1", "--train-images", "256",
                 "--out", str(out), "--name", "cli"]) == 0
    return next((out / "cli").glob("checkpoint_*"))


def test_score_all_and_sample_and_file(tiny_checkpoint, tmp_path, capsys):
    assert main(["score", str(tiny_checkpoint), "--all", "--out", str(tmp_path / "all.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "all.parquet")
    assert len(table) == load_space("tiny").size() == table["arch"].nunique()
    assert table["bn_score"].notna().all() and table["flops"].gt(0).all()
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(table["arch"].head(5)))
    assert main(["score", str(tiny_checkpoint), "--archs", str(keys), "--out", str(tmp_path / "five.parquet")]) == 0
    five = pd.read_parquet(tmp_path / "five.parquet")
    assert five["bn_score"].tolist() == pytest.approx(table["bn_score"].head(5).tolist())
    assert main(["score", str(tiny_checkpoint), "--sample", "100", "--out", str(tmp_path / "s.parquet")]) == 0
    assert "scored 100 architectures" in capsys.readouterr().out


def test_score_all_covers_every_nb201_architecture_with_standard_strings(ray_local, tmp_path):
    space = load_space("nb201")
    config = TrainConfig(epochs=1, batch_size=32, train_images=64, log_every_epoch=False)
    result = train_supernet(space, "synthetic", config, Scaling(num_workers=0), out_dir=tmp_path, name="nb")
    assert main(["score", str(result.checkpoint), "--all", "--out", str(tmp_path / "nb201.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "nb201.parquet")
    assert len(table) == 15625 and table["arch"].nunique() == 15625
    assert table["arch"].str.fullmatch(r"(\|[a-z_0-9]+~\d)+\|\+(\|[a-z_0-9]+~\d)+\|\+(\|[a-z_0-9]+~\d)+\|").all()
    assert "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|" in set(table["arch"])
    assert {"edge_0_1", "edge_2_3"} <= set(table.columns)


def test_calibrate_search_report_export(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "cal.parquet"
    assert main(["calibrate", str(tiny_checkpoint), "--sample", "3", "--calib-images", "64", "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert (table["calib_images"] == 64).all() and table["accuracy"].between(0, 1).all()
    assert "[raynas] calibrated 3/3" in capsys.readouterr().out  # the progress line's last update
    run = tmp_path / "search"
    assert main(["search", str(tiny_checkpoint), "--objectives", "bn_score,flops", "--constraint", "flops<=5e5",
                 "--trials", "60", "--search-batch", "30", "--top-k", "3", "--calib-images", "64",
                 "--out", str(run)]) == 0
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "pareto.png").read_bytes().startswith(b"\x89PNG")
    key = pd.read_csv(run / "report" / "front.csv")["arch"].iloc[0]
    assert main(["export", str(tiny_checkpoint), "--arch", key, "--calib-images", "64", "--out", str(tmp_path / "child")]) == 0
    child, arch, space = load_child(tmp_path / "child")
    assert child(torch.zeros(2, 1, arch["resolution"], arch["resolution"])).shape == (2, 10)
    assert "top-1" in capsys.readouterr().out


def test_bad_cli_input_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    assert main(["search", str(tiny_checkpoint), "--objectives", "bn_score,speed", "--out", str(tmp_path)]) == 2
    assert "unknown objective(s) ['speed']" in capsys.readouterr().err
    assert main(["search", str(tiny_checkpoint), "--sampler", "anneal", "--out", str(tmp_path)]) == 2
    assert "unknown sampler 'anneal'" in capsys.readouterr().err
    assert main(["score", str(tmp_path), "--all", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "is not a raynas checkpoint" in capsys.readouterr().err
    assert main(["train", "tiny", "--data", "imagefolder:/nonexistent", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_main_job_runs_on_the_embedded_default(ray_local, tmp_path, capsys):
    out = tmp_path / "main"
    assert main(["run", "--out", str(out), "--epochs", "2", "--trials", "60", "--search-batch", "30",
                 "--actors", "2", "--actor-cpus", "0.5", "--targets", "2", "--per-target", "1",
                 "--short-epochs", "2", "--final-epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\[raynas\] epoch 2/2", printed) and "4/4 report" in printed
    assert printed.count("test top-1") == 1  # the test figure is shown once, in the final table
    rows = pd.read_parquet(out / "results")
    assert set(rows["evaluator"]) == {"bn_score", "short_train", "final_train", "test"}
    assert (out / "report" / "final.png").exists() and json.loads((out / "run.json").read_text())["model"]["space_name"] == "tiny"
    models = sorted((out / "models").iterdir())
    assert len(models) == 2
    child, arch, _ = load_child(models[-1])
    assert child(torch.zeros(1, 1, arch["resolution"], arch["resolution"])).argmax(1).shape == (1,)


def test_main_job_ranks_by_an_estimator(ray_local, tmp_path, capsys):
    out = tmp_path / "main"
    flags = ["run", "--out", str(out), "--epochs", "1", "--trials", "30", "--search-batch", "30", "--actors", "2",
             "--actor-cpus", "0.5", "--targets", "2", "--per-target", "1", "--short-epochs", "1", "--final-epochs", "1"]
    assert main([*flags, "--estimator", "fuse:naswot+"]) == 2  # refused before any training
    err = capsys.readouterr().err.strip()
    assert "malformed term" in err and len(err.splitlines()) == 1, err
    assert main([*flags, "--estimator", "naswot"]) == 0
    printed = capsys.readouterr().out
    assert "children ranked by naswot" in printed
    for stage in ("short_train 2/2", "final_train 2/2"):  # each Tune stage says how far it got
        assert re.search(rf"{stage} \(.*children/s\); 0 running, best val top-1 0\.\d{{4}}", printed), printed
    rows = pd.read_parquet(out / "results")
    assert set(rows["evaluator"]) == {"estimate", "short_train", "final_train", "test"}
    searched = rows[(rows["evaluator"] == "estimate") & (rows["status"] == "ok")]
    assert searched["estimate"].notna().all() and searched["bn_score"].isna().all()
    summary = json.loads((out / "final.json").read_text())
    shortlist = budget_shortlist(searched, [m["target"] for m in summary["models"]], "flops", 1, score="estimate")
    assert set(rows.loc[rows["evaluator"] == "short_train", "arch"]) == {a for k in shortlist.values() for a in k}
    assert [t["candidates"] for t in summary["selection"]["targets"]] == list(shortlist.values())
    assert summary["selection"]["ranked_by"] == "estimate+flops"
    assert json.loads((out / "run.json").read_text())["search"]["estimator"] == "naswot"
    assert summary["estimator"] == "naswot"
    assert len(list((out / "models").iterdir())) == 2
