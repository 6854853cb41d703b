"""Proxy settings, standalone proxy training on Ray (rows, resume), and `raynas proxy` end to end."""

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray

from raynas.bpe import (
    PROXY_FILE,
    ProxySetting,
    from_bpe_result,
    load_proxy_setting,
    load_reference_column,
    proxy_child_space,
    proxy_evaluate,
    read_proxy_rows,
)
from raynas.bpe.proxy import pack_proxy_data, proxy_scores, proxy_train_config, rank_against, train_proxy
from raynas.bpe.proxy_setting import KEYS
from raynas.cli import main
from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.space import load_space
from raynas.supernet import build_supernet
from raynas.train import loop
from raynas.train.standalone import fit_child

SHIPPED = Path(__file__).resolve().parents[2] / "search_spaces" / "bpe" / "proxy" / "nb201_cifar10_proxy.yaml"
TINY = {"channels": 4, "cells_per_stage": 1, "resolution": 8, "epochs": 1, "batch_size": 32, "lr": 0.05}
"""A proxy that trains an nb201 child on synthetic data in well under a second."""
TINY_YAML = "".join(f"{k}: {v}\n" for k, v in TINY.items())


@pytest.fixture(scope="module")
def nb201():
    return load_space("nb201")


def keys_of(space, n, seed=0):
    rng = random.Random(seed)
    keys = []
    while len(keys) < n:
        key = space.key(space.sample(rng))
        if key not in keys:
            keys.append(key)
    return keys


# --- settings ---------------------------------------------------------------------------------
def test_shipped_setting_is_the_papers_bpe1(nb201):
    setting = load_proxy_setting(SHIPPED, nb201)
    assert setting == ProxySetting()
    assert (setting.channels, setting.cells_per_stage, setting.resolution) == (8, 2, 16)
    assert (setting.epochs, setting.batch_size, setting.lr, setting.data_fraction) == (10, 128, 0.03, 1.0)


def test_setting_round_trips_and_takes_numpy_scalars():
    setting = ProxySetting(**TINY)
    assert ProxySetting.from_dict(setting.to_dict()) == setting
    assert ProxySetting.from_dict({"epochs": np.int64(3), "lr": np.float32(0.5)}).epochs == 3
    assert setting.replace(epochs=2, lr=None).to_dict() == {**setting.to_dict(), "epochs": 2}
    assert setting.train_images(1000) == 1000 and setting.replace(data_fraction=0.01).train_images(1000) == 32


@pytest.mark.parametrize("text, message", [
    ("epoch: 3\n", r"bad.yaml: unknown key\(s\) \['epoch'\]; valid keys: \['channels', 'cells_per_stage', "),
    ("lr: fast\n", r"bad.yaml: lr must be a finite number > 0, got 'fast' \(str\)$"),
    ("weight_decay: 3e-4\n", r"weight_decay must be a finite number >= 0, got '3e-4' \(str\) \(YAML reads 3e-4 as text"),
    ("channels: 0\n", r"bad.yaml: channels must be an integer >= 1, got 0 \(int\)"),
    ("epochs: 2.5\n", r"epochs must be an integer >= 1, got 2.5 \(float\)"),
    ("resolution: 2\n", r"resolution must be an integer >= 4, got 2"),
    ("data_fraction: 1.5\n", r"data_fraction must be a finite number in \(0, 1\], got 1.5"),
    ("augment: 1\n", r"augment must be true or false, got 1 \(int\)"),
    ("cutout: -1\n", r"bad.yaml: cutout must be an integer >= 0, got -1"),
    ("amp: off\n", r"amp must be one of \['off', 'bf16'\], got False \(bool\) \(quote \"off\": YAML reads off"),
    ("amp: fp16\n", r"amp must be one of \['off', 'bf16'\], got 'fp16' \(str\)$"),
    ("[8, 2]\n", r"bad.yaml: a proxy setting must be a mapping of \['channels', .*\], got list"),
    ("channels: [8\n", r"bad.yaml: malformed YAML at line 2"),
])
def test_bad_setting_files_name_file_key_and_rule(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_proxy_setting(tmp_path / "bad.yaml")


def _bpe_result(**setting):
    chosen = {"epochs": 3, "batch_size": 64, "resolution": "native", "width_multiplier": 0.5, "data_fraction": 0.5,
              "mode": "full", "sandwich_size": 4, "calib_images": 200, "lr": 0.1, **setting}
    return {"setting": chosen, "tau": 0.4, "target_space": "nb201", "bpe": "nb201_bpe"}


def test_a_bpe_result_maps_where_it_can(tmp_path, nb201):
    (tmp_path / "bpe_result.json").write_text(json.dumps(_bpe_result()))
    setting = load_proxy_setting(tmp_path / "bpe_result.json", nb201)
    assert (setting.channels, setting.cells_per_stage, setting.resolution) == (8, 5, 32)  # 16 x 0.5; NB201's N, size
    assert (setting.epochs, setting.batch_size, setting.lr, setting.data_fraction) == (3, 64, 0.1, 0.5)
    assert from_bpe_result(_bpe_result(resolution=16, width_multiplier=1.0), nb201).resolution == 16
    with pytest.raises(ConfigError, match=r"bpe_result.json: setting.mode is 'bn_only'; only 'full' maps"):
        from_bpe_result(_bpe_result(mode="bn_only"), nb201)
    with pytest.raises(ConfigError, match=r"the BPE result is for space 'nb201', not 'tiny'"):
        from_bpe_result(_bpe_result(), load_space("tiny"))
    with pytest.raises(ConfigError, match=r"maps onto a proxy setting only with its target space"):
        load_proxy_setting(tmp_path / "bpe_result.json")


def test_children_are_built_at_the_proxy_size_and_other_families_are_refused(nb201):
    setting = ProxySetting(channels=6, cells_per_stage=3, resolution=12)
    proxy = proxy_child_space(nb201, setting)
    key = keys_of(nb201, 1)[0]
    assert proxy.key(proxy.arch(key)) == key
    child = build_supernet(proxy, 10).export(proxy.arch(key))
    assert child.stem[0].out_channels == 6 and child.classifier.in_features == 24
    assert sum(type(layer).__name__ == "Cell" for layer in child.layers) == 9
    with pytest.raises(ConfigError, match=r"proxy supports nb201 spaces for now; space 'tiny' is family 'mobilenet'"):
        proxy_child_space(load_space("tiny"), setting)


def test_packed_data_is_the_proxy_share_at_the_proxy_resolution():
    data = load_data("synthetic")
    packed = pack_proxy_data(data, ProxySetting(**{**TINY, "data_fraction": 0.5}))
    assert packed["train_images"].shape == (round(len(data.train) / 2), 3, 8, 8)
    assert packed["val_images"].shape == (len(data.val), 3, 8, 8) and packed["info"]["image_size"] == 8
    assert "test_images" not in packed
    with pytest.raises(ConfigError, match=r"batch_size 512 is larger than the \d+ training images of synthetic"):
        pack_proxy_data(data, ProxySetting(**{**TINY, "batch_size": 512}))


def test_training_speed_is_the_sum_of_the_recorded_step_losses(monkeypatch, one_thread, nb201):
    setting = ProxySetting(**{**TINY, "epochs": 2})
    packed = pack_proxy_data(load_data("synthetic"), setting)
    config = proxy_train_config(setting, len(packed["train_labels"]))
    proxy, key = proxy_child_space(nb201, setting), keys_of(nb201, 1, seed=3)[0]
    steps: list[float] = []
    step = loop.sandwich_step

    def recorded(*args, **kwargs):
        losses = step(*args, **kwargs)
        steps.append(losses["child"])
        return losses

    monkeypatch.setattr(loop, "sandwich_step", recorded)

    fitted = fit_child(proxy, proxy.arch(key), packed, config)
    per_epoch = len(packed["train_labels"]) // setting.batch_size
    assert len(steps) == 2 * per_epoch and all(math.isfinite(v) and v > 0 for v in steps)
    assert fitted["epoch_loss_sums"] == pytest.approx([sum(steps[:per_epoch]), sum(steps[per_epoch:])])
    assert fitted["tse"] == pytest.approx(sum(steps)) and fitted["tse_e"] == pytest.approx(sum(steps[per_epoch:]))

    steps.clear()
    row = train_proxy(proxy, key, packed, config, "cpu")  # what a proxy row records, from the same steps
    assert row["tse"] == pytest.approx(sum(steps)) and row["tse_e"] == pytest.approx(sum(steps[per_epoch:]))
    assert row["tse"] == pytest.approx(fitted["tse"])  # same seed, same process: the same training


def test_a_lower_loss_sum_ranks_higher():
    rows = pd.DataFrame({"arch": ["a", "b", "c"], "proxy_accuracy": [0.5, 0.7, np.nan],
                         "tse": [9.0, 3.0, np.nan], "tse_e": [2.0, 4.0, 1.0]})
    assert proxy_scores(rows).tolist()[:2] == [0.5, 0.7]
    assert proxy_scores(rows, "tse").tolist()[:2] == [-9.0, -3.0]
    assert proxy_scores(rows, "tse_e").tolist() == [-2.0, -4.0, -1.0]
    with pytest.raises(ConfigError, match=r"^rank_by must be one of \['accuracy', 'tse', 'tse_e'\], got 'loss'$"):
        proxy_scores(rows, "loss")


# --- the CLI refuses bad input in one line, before Ray starts -----------------------------------
@pytest.fixture
def cli_files(tmp_path, nb201):
    keys = keys_of(nb201, 3)
    (tmp_path / "archs.txt").write_text("\n".join(keys) + "\n")
    (tmp_path / "setting.yaml").write_text(TINY_YAML)
    pd.DataFrame({"arch": keys, "true_acc": [91.0, 85.5, 70.2]}).to_csv(tmp_path / "ref.csv", index=False)
    return tmp_path


def _args(folder, *extra):
    return ["proxy", "nb201", "--archs", str(folder / "archs.txt"), "--setting", str(folder / "setting.yaml"),
            "--data", "synthetic", "--out", str(folder / "out"), *extra]


@pytest.mark.parametrize("change, message", [
    (("setting.yaml", "epoch: 1\n"), r"setting.yaml: unknown key\(s\) \['epoch'\]; valid keys"),
    (("setting.yaml", "batch_size: big\n"), r"setting.yaml: batch_size must be an integer >= 1, got 'big' \(str\)"),
    (("setting.yaml", "lr: -0.1\n"), r"setting.yaml: lr must be a finite number > 0, got -0.1"),
    ("--data-fraction=1.5", r"command line: data_fraction must be a finite number in \(0, 1\], got 1.5"),
    (("archs.txt", "r12-s8-w8d1:k3e1-w16d1:k3e2-h32\n"),
     r"archs.txt: NAS-Bench-201 string must have 3 '\+'-separated nodes, got 'r12-s8-w8d1:k3e1-w16d1:k3e2-h32'"),
    (("ref.csv", "key,true_acc\nx,1\n"), r"ref.csv: missing column\(s\) \['arch'\]; a reference table needs an `arch`"),
    ("--accuracy-column=acc", r"ref.csv: missing column\(s\) \['acc'\]; .*accuracy column 'acc', got \['arch', 'true_acc'\]"),
    (("ref.csv", "arch,true_acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10\n"),
     r"ref.csv: 3 architecture\(s\) to evaluate have no reference accuracy: \|"),
])
def test_cli_bad_input_is_one_line_before_ray(cli_files, capsys, change, message):
    extra = ["--reference", str(cli_files / "ref.csv"), "--accuracy-column", "true_acc"]
    if isinstance(change, tuple):
        (cli_files / change[0]).write_text(change[1])
    else:
        extra.append(change)
    assert main(_args(cli_files, *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("raynas proxy: error: "), err
    assert re.search(message, err), err
    assert not ray.is_initialized() and not (cli_files / "out").exists()


def test_cli_refuses_a_mobilenet_space_and_bad_flags(cli_files, capsys):
    args = _args(cli_files)
    args[1] = "tiny"
    assert main(args) == 2
    assert "proxy supports nb201 spaces for now; space 'tiny' is family 'mobilenet'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(_args(cli_files, "--channels", "0"))
    assert exit_info.value.code == 2 and "--channels: must be an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(_args(cli_files, "--rank-by", "loss"))
    assert exit_info.value.code == 2 and "--rank-by: invalid choice: 'loss'" in capsys.readouterr().err


# --- with Ray: rows, resume, and the command end to end ---------------------------------------
def test_rows_and_resume_without_retraining(ray_local, tmp_path, nb201):
    keys = keys_of(nb201, 4)
    setting = ProxySetting(**TINY)
    trained = []
    rows = proxy_evaluate(nb201, keys[:3], setting, "synthetic", tmp_path, on_row=trained.append)
    assert list(rows["arch"]) == keys[:3] and sorted(r["arch"] for r in trained) == sorted(keys[:3])
    assert rows["status"].eq("ok").all() and rows["proxy_accuracy"].between(0, 1).all() and (rows["seconds"] > 0).all()
    assert (rows[list(KEYS)] == pd.Series(setting.to_dict())).all().all()
    assert rows["data"].eq("synthetic").all() and rows["train_images"].eq(len(load_data("synthetic").train)).all()
    assert np.isfinite(rows[["tse", "tse_e"]]).all().all() and (rows["tse_e"] > 0).all()
    assert np.allclose(rows["tse"], rows["tse_e"])  # one epoch: every loss is the last epoch's

    trained.clear()
    again = proxy_evaluate(nb201, keys, setting, "synthetic", tmp_path, on_row=trained.append)
    assert [r["arch"] for r in trained] == [keys[3]]  # only the new architecture trains
    pd.testing.assert_frame_equal(again.iloc[:3].reset_index(drop=True), rows)

    other = proxy_evaluate(nb201, keys[:1], setting.replace(seed=1), "synthetic", tmp_path, on_row=trained.append)
    assert len(trained) == 2 and other["seed"].tolist() == [1]  # another setting is another proxy
    stored = read_proxy_rows(tmp_path)
    assert len(stored) == 5 and sorted(stored["seed"]) == [0, 0, 0, 0, 1]
    assert not list(tmp_path.glob(".tmp-*"))


def test_cutout_bf16_and_tse_rows_written_before_them_still_resume(ray_local, tmp_path, nb201):
    keys = keys_of(nb201, 2, seed=5)
    setting = ProxySetting(**TINY, cutout=3, amp="bf16")
    rows = proxy_evaluate(nb201, keys, setting, "synthetic", tmp_path / "new")
    assert rows["status"].eq("ok").all() and rows["proxy_accuracy"].between(0, 1).all()
    assert rows["cutout"].eq(3).all() and rows["amp"].eq("bf16").all()

    plain = ProxySetting(**TINY)
    proxy_evaluate(nb201, keys, plain, "synthetic", tmp_path / "old")
    path = tmp_path / "old" / PROXY_FILE
    table = pq.read_table(path)
    old = table.drop(["cutout", "amp", "tse", "tse_e"]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(old, path)
    stored = read_proxy_rows(tmp_path / "old")  # a file written before cutout and amp: it trained without them
    assert stored["cutout"].eq(0).all() and stored["amp"].eq("off").all()
    assert stored["tse"].isna().all() and stored["tse_e"].isna().all()  # nor was its training speed recorded
    trained = []
    again = proxy_evaluate(nb201, keys, plain, "synthetic", tmp_path / "old", on_row=trained.append)
    assert not trained and sorted(again["arch"]) == sorted(keys)
    assert again["proxy_accuracy"].notna().all() and again["tse"].isna().all()


def test_cli_end_to_end_with_the_shipped_setting_and_a_reference(ray_local, cli_files, capsys, nb201):
    keys = (cli_files / "archs.txt").read_text().split()
    pd.DataFrame({"arch": keys}).to_parquet(cli_files / "archs.parquet")
    args = ["proxy", "nb201", "--archs", str(cli_files / "archs.parquet"), "--setting", str(SHIPPED),
            "--data", "synthetic", "--out", str(cli_files / "out"), "--reference", str(cli_files / "ref.csv"),
            "--accuracy-column", "true_acc", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()],
            "--no-augment", "--cutout=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"proxy_accuracy \d", out)) == 3  # one progress line per trained architecture
    assert "mean seconds per architecture: " in out and f"wrote {cli_files / 'out' / PROXY_FILE}" in out
    assert "ranked by accuracy, against ref.csv:true_acc over 3 architectures: spearman rho " in out
    assert "kendall tau " in out
    rows = read_proxy_rows(cli_files / "out")
    assert sorted(rows["arch"]) == sorted(keys) and not rows["augment"].any() and rows["channels"].eq(4).all()
    assert rows["epochs"].eq(1).all() and rows["weight_decay"].eq(3e-4).all()  # flags win, the file fills the rest
    assert rows["cutout"].eq(2).all() and rows["amp"].eq("off").all()

    assert main([*args, "--rank-by", "tse"]) == 0  # resumed: nothing left to train, ranked by TSE
    out = capsys.readouterr().out
    assert not re.findall(r"proxy_accuracy \d", out)
    rows = read_proxy_rows(cli_files / "out")
    reference = load_reference_column(cli_files / "ref.csv", nb201, "true_acc")
    ranks = rank_against(rows, reference, "tse")
    assert ranks["archs"] == 3
    assert (f"ranked by tse, against ref.csv:true_acc over 3 architectures: spearman rho {ranks['spearman_rho']:.4f}  "
            f"kendall tau {ranks['kendall_tau']:.4f}") in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["arch"])
    table = lines[header + 1:header + 4]  # best first: the lowest TSE on top
    assert [line.split()[0] for line in table] == list(rows.sort_values("tse")["arch"])
    assert math.isfinite(rows["seconds"].sum())


@pytest.mark.parametrize("path", sorted(SHIPPED.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_setting_loads_as_it_is(path, nb201):
    setting = load_proxy_setting(path, nb201)
    assert proxy_child_space(nb201, setting).family == "nb201"
    assert setting.to_dict() == {**ProxySetting().to_dict(), **__import__("yaml").safe_load(path.read_text())}
