"""``raynas run`` end to end on a small budget: real Ray Train, Optuna, Ray Tune with ASHA, Parquet.

One BN-NAS run is shared by the module: it checks split discipline (test read once, never shipped
to workers or actors), deduplication, the exported models (raynas, TorchScript) and resume.
"""

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch

from raynas.cli import main
from raynas.data import load_data, to_model_input
from raynas.search.pool import pack_eval_data
from raynas.supernet import load_child
from raynas.train.data_feed import pack_splits

SMALL = ["--space", "tiny", "--data", "synthetic", "--workers", "0", "--epochs", "1", "--trials", "60",
         "--search-batch", "30", "--actors", "1", "--calib-images", "32", "--targets", "2", "--per-target", "2",
         "--short-epochs", "2", "--final-epochs", "2"]


@pytest.fixture(scope="module")
def finished_run(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("main") / "run"
    assert main(["run", *SMALL, "--out", str(out)]) == 0
    return out


def test_one_tested_model_per_target_and_test_read_once(finished_run):
    summary = json.loads((finished_run / "final.json").read_text())
    assert len(summary["models"]) == 2 and summary["test_reads"] == 2
    rows = pd.read_parquet(finished_run / "results")
    test_rows = rows[rows["split"] == "test"]
    assert len(test_rows) == 2 and set(test_rows["evaluator"]) == {"test"}
    assert rows.loc[rows["accuracy"].notna(), "split"].notna().all()
    assert set(rows.loc[rows["evaluator"].isin(["short_train", "final_train"]), "split"]) == {"val"}
    budgets = [m["target"] for m in summary["models"]]
    assert all(m["flops"] <= m["target"] for m in summary["models"]) and budgets == sorted(budgets)


def test_no_architecture_is_scored_twice(finished_run):
    rows = pd.read_parquet(finished_run / "results")
    scored = rows[(rows["evaluator"] == "bn_score") & (rows["status"] == "ok")]
    assert scored["arch"].is_unique
    short = rows[rows["evaluator"] == "short_train"]
    assert short["arch"].is_unique and len(short) == 4


def test_final_json_records_the_whole_funnel(finished_run):
    summary = json.loads((finished_run / "final.json").read_text())
    selection = summary["selection"]
    rows = pd.read_parquet(finished_run / "results")
    searched = rows[(rows["evaluator"] == "bn_score") & (rows["status"] == "ok")]
    short = rows[rows["evaluator"] == "short_train"].set_index("arch")
    assert selection["rule"] == "budget" and selection["ranked_by"] == "bn_score+flops"
    assert selection["prescreened"] == searched["arch"].nunique() and selection["rungs"] == [2]
    assert [t["target"] for t in selection["targets"]] == [m["target"] for m in summary["models"]]
    for target, model in zip(selection["targets"], summary["models"]):
        assert len(target["candidates"]) == 2 and target["winner"] == model["arch"] in target["candidates"]
        assert (short.loc[target["candidates"], "flops"] <= target["target"]).all()  # any cost under its budget
        assert target["reached"] == {"2": 2}
        assert model["how"].startswith(f"2 of {selection['prescreened']} searched, under the budget by bn_score+flops")
    assert (finished_run / "report" / "final.png").stat().st_size > 0


def test_workers_and_actors_never_receive_test_images():
    data = load_data("synthetic", seed=0)
    test = {bytes(img.numpy()) for img in data.test.images}
    for packed in (pack_splits(data), pack_eval_data(data)):
        for name, array in packed.items():
            if name.endswith("_images"):
                assert not test & {bytes(img) for img in array}, name


def test_shipped_models_load_in_raynas_and_without_it(finished_run):
    summary = json.loads((finished_run / "final.json").read_text())
    folder = summary["models"][-1]["model"]
    child, arch, space = load_child(folder)
    record = json.loads(open(f"{folder}/arch.json").read())
    assert record["metrics"]["test_top1"] == pytest.approx(summary["models"][-1]["test_top1"])
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    pre = record["preprocessing"]
    expected = child(to_model_input(images, pre["mean"], pre["std"], pre["resolution"]))
    torch.save(images.float() / 255, f"{folder}/probe.pt")
    script = ("import sys; sys.modules['raynas'] = None; import torch; "
              f"m = torch.jit.load('{folder}/model.ts'); x = torch.load('{folder}/probe.pt'); "
              f"torch.save(m(x), '{folder}/probe_out.pt')")
    subprocess.run([sys.executable, "-c", script], check=True)
    assert torch.allclose(torch.load(f"{folder}/probe_out.pt"), expected, atol=1e-4)


def test_a_finished_run_is_not_tested_again(finished_run, capsys):
    before = pd.read_parquet(finished_run / "results")
    assert main(["run", *SMALL, "--out", str(finished_run)]) == 0
    assert "holds a finished run" in capsys.readouterr().out
    assert len(pd.read_parquet(finished_run / "results")) == len(before)


@pytest.mark.parametrize("flags, message", [
    (["--targets", "x"], "--targets must be a count such as 3 or budgets such as 2e4,5e4, got 'x'"),
    (["--targets", "5,1e9"], "cannot be met: the smallest child of tiny has flops="),
    (["--per-target", "0"], "shortlist size per target must be >= 1, got 0"),
    (["--objectives", "bn_score"], "the main job needs a cost objective among"),
    (["--short-epochs", "0"], "epochs must be >= 1, got 0"),
    (["--final-epochs", "-2"], "epochs must be >= 1, got -2"),
    (["--perturbations", "-1"], "--perturbations and --finetune-epochs must be >= 0, got -1, 0"),
    (["--finetune-epochs", "-3"], "--perturbations and --finetune-epochs must be >= 0, got 20, -3"),
    (["--depth-rule", "median"], "invalid choice: 'median'"),
    (["--sampling", "random"], "invalid choice: 'random'"),
])
def test_bad_options_get_one_line_errors(ray_local, tmp_path, capsys, flags, message):
    try:
        code = main(["run", *SMALL, *flags, "--out", str(tmp_path / "bad")])
    except SystemExit as exit:  # argparse's own choice errors
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad" / "train").exists()  # refused before any training


def test_bignas_mode_deploys_calibrated_children_without_retraining(ray_local, tmp_path):
    out = tmp_path / "bignas"
    assert main(["run", *SMALL, "--mode", "full", "--perturbations", "3", "--finetune-epochs", "1",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "final.json").read_text())
    assert len(summary["models"]) == 2 and summary["test_reads"] == 2
    rows = pd.read_parquet(out / "results")
    assert not rows["evaluator"].isin(["short_train", "final_train"]).any()  # no retraining from scratch
    assert (rows["evaluator"] == "finetune").sum() == len({m["arch"] for m in summary["models"]})
    calibrated = rows[(rows["evaluator"] == "calibrate") & (rows["status"] == "ok")]
    assert len(calibrated) >= 2 and set(calibrated["split"]) == {"val"} and calibrated["arch"].is_unique
    record = json.loads(open(f"{summary['models'][0]['model']}/arch.json").read())
    assert re.fullmatch(r"calibrated on \d+ images \((grid|perturb)\), fine-tuned 1 epochs", record["metrics"]["how"])
    assert record["model"]["space"].get("stage_skip") is True  # BigNAS's stage-transition skips travel with the model
    child, arch, space = load_child(summary["models"][0]["model"])
    assert space.key(arch) == summary["models"][0]["arch"]
