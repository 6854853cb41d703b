"""BPE spaces, reference tables, the MIP pruning decision, and an end-to-end MIP run on Ray Tune."""

import itertools
import json
import math
import random
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from raynas.bpe import (
    HYPERPARAMETERS,
    NATIVE,
    ProxyTask,
    Reference,
    evaluate_setting,
    load_bpe_space,
    load_reference,
    make_reference,
    proxy_arch,
    proxy_space,
    prune_decision,
    read_trials,
    run_bpe,
    trial_config,
    trial_objectives,
)
from raynas.bpe.mip import FIX_AT, TRIAL_SCHEMA, best_value, round_searcher, write_round
from raynas.bpe.space import FIX_AT_CHOICES, MIPConfig
from raynas.cli import main
from raynas.errors import ArchError, ConfigError, SpaceError
from raynas.space import load_space

BPE_DIR = Path(__file__).resolve().parents[2] / "search_spaces" / "bpe"
TINY_BPE = BPE_DIR / "tiny_bpe.yaml"

GOOD = """
target_space: tiny
data: digits
hyperparameters:
  epochs: [1, 2]
  batch_size: [64, 128]
  mode: [bn_only]
"""


def write(tmp_path, text, name="bad_bpe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- BPE files --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(BPE_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_bpe_files_load(path):
    bpe = load_bpe_space(path)
    assert bpe.free and set(bpe.choices) == set(bpe.names)
    assert len(bpe.reference_arch_list()) >= 3


def test_left_out_hyperparameters_are_fixed_at_their_defaults(tmp_path):
    bpe = load_bpe_space(write(tmp_path, GOOD))
    assert bpe.free == ("epochs", "batch_size")
    assert bpe.fixed["resolution"] == NATIVE and bpe.fixed["width_multiplier"] == 1.0
    assert bpe.estimator_for("bn_only") == "bn_score" and bpe.estimator_for("full") == "calibrated_accuracy"


@pytest.mark.parametrize("old, new, message", [
    ("  mode: [bn_only]", "  mode: [bn_only]\n  epoch: [3]",
     r"bad_bpe.yaml: hyperparameters: unknown hyper-parameter\(s\) \['epoch'\] for a supernet proxy; valid hyper-parameters: \['epochs', "),
    ("[1, 2]", "[2, 1]", r"bad_bpe.yaml: hyperparameters.epochs: choices must be strictly increasing, got \[2, 1\]"),
    ("[bn_only]", "[bn_only, fast]", r"hyperparameters.mode: unknown mode\(s\) \['fast'\]; valid modes: \['bn_only', 'full'\]"),
    ("  mode: [bn_only]", "  mode: [bn_only]\n  data_fraction: [0, 1]",
     r"hyperparameters.data_fraction: every choice must be in \(0, 1\], got \[0\]"),
    ("  mode: [bn_only]", "  mode: [bn_only]\n  resolution: [native, 2]",
     r"hyperparameters.resolution: every resolution must be >= 4"),
    ("  mode: [bn_only]", "  mode: [bn_only]\n  sandwich_size: [1, 2]",
     r"hyperparameters.sandwich_size: every choice must be >= 2, got \[1, 2\]"),
    ("  mode: [bn_only]", "  mode: [bn_only]\n  lr: [fast]", r"hyperparameters.lr: every choice must be a finite number"),
    ("[bn_only]", "[bn_only, full]\nestimator: bn_score",
     r"bad_bpe.yaml: estimator: bn_score ranks BN-only supernets, so it needs hyperparameters.mode to be \[bn_only\]"),
    ("data: digits", "data: digits\nestimator: best", r"estimator: must be one of \['auto', 'bn_score', 'calibrated_accuracy'\]"),
    ("target_space: tiny", "target_space: nope", r"bad_bpe.yaml: target_space: unknown space 'nope'; shipped spaces"),
    ("data: digits", "data: digits\nbudget: 3", r"bad_bpe.yaml: unknown key\(s\) \['budget'\]"),
    ("data: digits", "data: digits\nreference_archs: [r12-s8-w8d1:k3e1-w16d1:k3e2-h32, r99-bad]",
     r"reference_archs\[1\]: not an architecture of space 'tiny'"),
    ("data: digits", "data: digits\nreference_archs: 1", r"reference_archs: must be >= 2, got 1"),
    ("data: digits", "data: digits\ntrain: {epochs: 3}", r"train: key\(s\) \['epochs'\] are set by the BPE hyper-parameters"),
    ("data: digits", "data: digits\ntrain: {optimizer: adam}", r"train: unknown training config key\(s\) \['optimizer'\]"),
    ("data: digits", "data: digits\nmip: {rounds: 0}", r"mip: rounds must be an integer >= 1, got 0"),
    ("data: digits", "data: digits\nmip: {sampler: magic}", r"mip: unknown sampler 'magic'; valid samplers"),
    ("data: digits", "data: digits\nmip: {round: 2}", r"mip: unknown key\(s\) \['round'\]"),
])
def test_bpe_file_errors_name_file_key_and_rule(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(SpaceError, match=message):
        load_bpe_space(write(tmp_path, GOOD.replace(old, new, 1)))


def test_missing_sections_and_malformed_yaml(tmp_path):
    with pytest.raises(SpaceError, match=r"bad_bpe.yaml: missing required key\(s\) \['hyperparameters'\]"):
        load_bpe_space(write(tmp_path, "target_space: tiny\n"))
    with pytest.raises(SpaceError, match=r"bad_bpe.yaml: malformed YAML"):
        load_bpe_space(write(tmp_path, "target_space: [tiny\n"))
    with pytest.raises(SpaceError, match=r"BPE file not found"):
        load_bpe_space(tmp_path / "none.yaml")


def test_cli_reports_bpe_file_errors(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("[1, 2]", "[2, 1]"))
    assert main(["bpe", str(path), "--reference", str(tmp_path / "ref.csv"), "--out", str(tmp_path / "out")]) == 2
    assert "raynas bpe: error: bad_bpe.yaml: hyperparameters.epochs: choices must be strictly increasing" in capsys.readouterr().err


# --- supernet sampling and the BN indicator's depth rule -----------------------------------------
def _task(bpe, tmp_path, **options):
    space = bpe.target_space
    archs = (space.min(), space.max())
    reference = Reference(space.name, archs, tuple(space.key(a) for a in archs), (0.1, 0.2))
    return ProxyTask(bpe, reference, str(tmp_path / "runs"), **options)


def test_sampling_and_depth_rule_default_per_family_and_explicit_values_win(tmp_path):
    tiny = load_bpe_space(write(tmp_path, GOOD))
    nb201 = load_bpe_space(write(tmp_path, GOOD.replace("target_space: tiny", "target_space: nb201"), "nb.yaml"))
    assert (_task(tiny, tmp_path).sampling, _task(tiny, tmp_path).depth_rule) == ("sandwich", "mean")
    assert (_task(nb201, tmp_path).sampling, _task(nb201, tmp_path).depth_rule) == ("uniform", "sum")
    chosen = _task(tiny, tmp_path, sampling="uniform", depth_rule="sum")
    assert (chosen.sampling, chosen.depth_rule) == ("uniform", "sum")
    from_file = load_bpe_space(write(tmp_path, GOOD + "train: {sampling: uniform}\n", "file.yaml"))
    assert _task(from_file, tmp_path).sampling == "uniform"
    assert _task(from_file, tmp_path, sampling="sandwich").sampling == "sandwich"


def test_sandwich_size_counts_the_children_of_either_sampling(tmp_path):
    bpe = load_bpe_space(write(tmp_path, GOOD))
    setting = {**bpe.fixed, "epochs": 1, "batch_size": 64, "sandwich_size": 3}
    sandwich, uniform = (trial_config(bpe, setting, 1000, s) for s in ("sandwich", "uniform"))
    assert (sandwich.sampling, sandwich.num_random) == ("sandwich", 1)
    assert (uniform.sampling, uniform.num_random) == ("uniform", 3)
    assert trial_config(bpe, {**setting, "sandwich_size": 2}, 1000, "uniform").num_random == 2


def test_bad_sampling_or_depth_rule_fails_before_any_trial(tmp_path):
    bpe = load_bpe_space(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match=r"unknown sampling 'random'; valid samplings: \['sandwich', 'uniform'\]"):
        _task(bpe, tmp_path, sampling="random")
    with pytest.raises(ConfigError, match=r"unknown depth_rule 'median'; valid depth rules: \['sum', 'mean'\]"):
        _task(bpe, tmp_path, depth_rule="median")
    _reference_rows(bpe.target_space).to_csv(tmp_path / "ref.csv", index=False)
    with pytest.raises(ConfigError, match="unknown depth_rule 'median'"):
        run_bpe(bpe, tmp_path / "ref.csv", tmp_path / "out", depth_rule="median", verbose=False)


# --- proxy transforms -------------------------------------------------------------------------
def test_width_and_resolution_proxies_rewrite_the_space_and_map_archs():
    space = load_space("tiny")
    proxy = proxy_space(space, 0.5, 8)
    assert proxy.dim("resolution").choices == (8,)
    assert proxy.dim("stem_width").choices == (4, 6) and proxy.dim("s1_width").choices == (8, 12)
    assert proxy.dim("s0_b1_kernel").choices == space.dim("s0_b1_kernel").choices
    arch = space.max()
    assert proxy.key(proxy_arch(space, proxy, arch, 0.5, 8)) == "r8-s6-w8d2:k5e3,k5e3-w12d2:k5e4,k5e4-h24"
    tiny = proxy_space(space, 0.01, NATIVE)  # every width collapses to 1, resolutions stay
    assert tiny.dim("s1_width").choices == (1,) and tiny.dim("resolution").choices == space.dim("resolution").choices
    assert proxy_arch(space, tiny, arch, 0.01)["resolution"] == arch["resolution"]
    assert proxy_space(space, 1.0, NATIVE) is space
    nb201 = proxy_space(load_space("nb201"), 0.5, 16)
    assert nb201.spec.channels == 8 and nb201.spec.input_resolution == 16


# --- reference tables -------------------------------------------------------------------------
def _reference_rows(space, n=4):
    archs = [space.min(), space.max(), *(space.sample(random.Random(i)) for i in range(n - 2))]
    return pd.DataFrame({"arch": [space.key(a) for a in archs], "accuracy": [0.5 + 0.1 * i for i in range(n)]})


def test_reference_round_trips_through_csv_and_parquet(tmp_path):
    space = load_space("tiny")
    rows = _reference_rows(space)
    rows.to_csv(tmp_path / "ref.csv", index=False)
    reference = load_reference(tmp_path / "ref.csv", space)
    assert reference.keys == tuple(rows["arch"]) and reference.accuracy == tuple(rows["accuracy"])
    again = load_reference(reference.write(tmp_path / "ref.parquet"), space)
    assert again.archs == reference.archs and again.accuracy == reference.accuracy
    assert reference.select([reference.keys[2], reference.keys[0]]).accuracy == (rows["accuracy"][2], rows["accuracy"][0])
    with pytest.raises(ConfigError, match=r"reference_archs not in the reference table: r99"):
        reference.select(["r99"])


def test_reference_with_unknown_architectures_names_them_and_the_space(tmp_path):
    space = load_space("tiny")
    rows = _reference_rows(space)
    rows.loc[1, "arch"] = "r99-s8-w8d1:k3e1-w16d1:k3e2-h32"
    rows.loc[3, "arch"] = "not-a-key"
    rows.to_csv(tmp_path / "ref.csv", index=False)
    with pytest.raises(ArchError, match=r"ref.csv: 2 architecture\(s\) are not in space 'tiny': "
                                        r"row 2 'r99-s8-.*resolution=99 is not a valid choice.*; row 4 'not-a-key'"):
        load_reference(tmp_path / "ref.csv", space)


def test_reference_with_missing_or_nan_accuracy_names_the_rows(tmp_path):
    space = load_space("tiny")
    rows = _reference_rows(space).astype({"accuracy": object})
    rows.loc[0, "accuracy"] = None
    rows.loc[2, "accuracy"] = "high"
    rows.to_csv(tmp_path / "ref.csv", index=False)
    with pytest.raises(ConfigError, match=r"ref.csv: 2 row\(s\) have a missing, NaN or non-numeric accuracy: "
                                          r"row 1 \(r12-.*\): accuracy nan; row 3 \(.*\): accuracy 'high'"):
        load_reference(tmp_path / "ref.csv", space)
    nan_rows = _reference_rows(space)
    nan_rows.loc[3, "accuracy"] = float("nan")
    nan_rows.to_parquet(tmp_path / "ref.parquet")
    with pytest.raises(ConfigError, match=r"ref.parquet: 1 row\(s\) have a missing, NaN .*: row 4 "):
        load_reference(tmp_path / "ref.parquet", space)


def test_reference_table_shape_errors(tmp_path):
    space = load_space("tiny")
    _reference_rows(space).rename(columns={"accuracy": "acc"}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(ConfigError, match=r"a.csv: missing column\(s\) \['accuracy'\]"):
        load_reference(tmp_path / "a.csv", space)
    rows = _reference_rows(space)
    rows.loc[2, "arch"] = rows.loc[0, "arch"]
    rows.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ConfigError, match=r"b.csv: architecture\(s\) listed more than once"):
        load_reference(tmp_path / "b.csv", space)
    _reference_rows(space).head(2).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ConfigError, match=r"needs at least 3 architectures, got 2"):
        load_reference(tmp_path / "c.csv", space)
    with pytest.raises(ConfigError, match=r"reference table not found"):
        load_reference(tmp_path / "none.csv", space)


# --- the pruning decision (pure: no Ray, no training) -----------------------------------------
CHOICES = {"lr": (0.05, 0.1, 0.5), "epochs": (1, 2), "batch_size": (64, 128)}


def _synthetic_records(noise=0.005, repeats=2, seed=0):
    """tau depends strongly on lr, weakly on epochs, not at all on batch_size."""
    rng = random.Random(seed)
    records = []
    for _ in range(repeats):
        for lr, epochs, batch in itertools.product(*CHOICES.values()):
            tau = 0.3 * CHOICES["lr"].index(lr) + 0.05 * (epochs - 1) + rng.gauss(0, noise)
            records.append({"lr": lr, "epochs": epochs, "batch_size": batch, "tau": tau,
                            "cost_seconds": 10.0 * epochs, "status": "ok"})
    return records


def test_pruning_fixes_the_least_important_hyperparameter_first():
    records = _synthetic_records()
    free = ["epochs", "batch_size", "lr"]
    first = prune_decision(records, free, CHOICES, seed=0)
    assert first.param == "batch_size"
    assert first.importances["lr"] > first.importances["epochs"] > first.importances["batch_size"]
    second = prune_decision(records, ["epochs", "lr"], CHOICES, seed=0, fix_at="best")
    assert (second.param, second.value) == ("epochs", 2)
    assert prune_decision(records, ["lr"], CHOICES, fix_at="best").value == 0.5


def test_pruning_fixes_at_the_cheapest_value_by_default_as_the_paper_does():
    records = _synthetic_records()  # epochs=2 ranks a little better and costs twice as much
    decision = prune_decision(records, ["epochs", "lr"], CHOICES, seed=0)
    assert (decision.param, decision.value, decision.fix_at) == ("epochs", 1, "cheapest")
    assert decision.value_means == {"1": 10.0, "2": 20.0}  # mean measured seconds per value
    assert MIPConfig().fix_at == "cheapest" and MIPConfig(fix_at="best").fix_at == "best"
    with pytest.raises(ConfigError, match="fix_at must be one of"):
        MIPConfig(fix_at="cheap")
    assert set(FIX_AT) == set(FIX_AT_CHOICES)


def test_a_hyperparameter_never_varied_is_not_pruned_for_lack_of_evidence():
    records = [r for r in _synthetic_records() if r["batch_size"] == 64]  # only lr and epochs vary
    decision = prune_decision(records, ["epochs", "batch_size", "lr"], CHOICES, seed=0)
    assert decision.importances["batch_size"] == 0.0 and decision.param == "epochs"


def test_cost_weight_trades_tau_for_cost():
    records = _synthetic_records()
    assert best_value(records, "epochs", CHOICES["epochs"], trial_objectives(records))[0] == 2
    objectives = trial_objectives(records, cost_weight=1.0)  # epochs=2 costs 0.5 more, gains 0.05 tau
    assert best_value(records, "epochs", CHOICES["epochs"], objectives)[0] == 1


def test_pruning_without_signal_is_deterministic():
    records = [{**r, "tau": float("nan"), "status": "degenerate"} for r in _synthetic_records()]
    decision = prune_decision(records, ["epochs", "batch_size"], CHOICES)
    assert decision.importances == {"epochs": 0.0, "batch_size": 0.0}
    assert (decision.param, decision.value) == ("epochs", 1)  # ties: declared first, then first choice
    same_values = [r for r in _synthetic_records() if (r["epochs"], r["batch_size"]) == (2, 64)]  # tau varies by lr
    assert prune_decision(same_values, ["epochs", "batch_size"], CHOICES).importances == {"epochs": 0.0, "batch_size": 0.0}


@pytest.mark.parametrize("cost_weight", [0.0, 0.5])
def test_round_searcher_suggests_free_values_around_the_fixed_ones(cost_weight):
    bpe = load_bpe_space(TINY_BPE)
    fixed = {**bpe.fixed, "epochs": 2}
    earlier = [{**fixed, "batch_size": b, "data_fraction": 1.0, "tau": 0.1 * i, "cost_seconds": 3.0, "status": "ok"}
               for i, b in enumerate([64, 128])]
    earlier.append({**earlier[0], "epochs": 1})  # disagrees with the fixed epochs: not a warm start
    searcher = round_searcher(bpe, bpe.mip.replace(cost_weight=cost_weight), 1, ["batch_size", "data_fraction"],
                              fixed, earlier)
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        assert set(config) == set(HYPERPARAMETERS) and config["epochs"] == 2 and config["lr"] == 0.1
        assert config["batch_size"] in (64, 128) and config["data_fraction"] in (0.5, 1.0)
        searcher.on_trial_complete(f"t{i}", {"tau_objective": 0.2, "cost_seconds": 1.0})


def test_trial_rows_are_one_closed_parquet_file_per_round(tmp_path):
    row = {**{k: v[0] for k, v in load_bpe_space(TINY_BPE).choices.items()}, "estimator": "bn_score", "tau": 0.2,
           "cost_seconds": 1.5, "status": "ok", "trial_id": "x"}
    write_round(tmp_path / "trials", 0, [{**row, "round": 0, "trial": 0}, {**row, "round": 0, "trial": 1}])
    write_round(tmp_path / "trials", 1, [{**row, "resolution": 16, "round": 1, "trial": 2}])
    table = read_trials(tmp_path).to_pandas()
    assert list(table["trial"]) == [0, 1, 2] and table["resolution"].isna().tolist() == [True, True, False]
    assert not list((tmp_path / "trials").glob(".tmp-*"))

    first = tmp_path / "trials" / "round-000.parquet"  # as written before the cutout and amp columns
    old = pq.read_table(first)
    pq.write_table(old.drop(["cutout", "amp"]).replace_schema_metadata(old.schema.metadata), first)
    again = read_trials(tmp_path)
    assert again.schema == TRIAL_SCHEMA and again.column("cutout").null_count == 3


# --- with Ray: one BN-only trial, then a whole MIP run -----------------------------------------
@pytest.mark.slow
def test_bn_only_trial_on_a_scaled_space_is_scored_by_the_bn_indicator(ray_local, tmp_path):
    from raynas.data import load_data

    bpe = load_bpe_space(TINY_BPE)
    space = bpe.target_space
    archs = bpe.reference_arch_list()
    reference = Reference(space.name, tuple(archs), tuple(space.key(a) for a in archs),
                          tuple(float(i) for i in range(len(archs))))
    setting = {**bpe.fixed, "epochs": 1, "batch_size": 64, "data_fraction": 0.5, "mode": "bn_only",
               "width_multiplier": 0.5, "resolution": 8, "sandwich_size": 3}
    data = load_data("digits", max_train_images=256)
    row = evaluate_setting(ProxyTask(bpe, reference, str(tmp_path / "runs")), setting, data)
    assert row["estimator"] == "bn_score" and row["status"] == "ok", row
    assert -1 <= row["tau"] <= 1 and row["cost_seconds"] >= row["train_seconds"] > 0
    assert row["train_images"] == 128 and row["device"] == "cpu"
    assert not list((tmp_path / "runs").iterdir())  # run folders are removed unless keep_runs


@pytest.mark.slow
def test_mip_end_to_end_on_tiny_digits(ray_local, tmp_path):
    from raynas.data import load_data
    from raynas.train import TrainConfig

    bpe = load_bpe_space(TINY_BPE)
    data = load_data("digits", seed=bpe.seed, calib_images=100, max_train_images=400)
    made = make_reference(bpe.target_space, bpe.reference_arch_list(), data,
                          TrainConfig(mode="full", epochs=1, batch_size=64, lr=0.1, augment=False),
                          path=tmp_path / "reference.csv")
    assert len(made) == 6 and all(0 <= a <= 1 for a in made.accuracy)

    result = run_bpe(bpe, tmp_path / "reference.csv", tmp_path / "out", data=data, rounds=2, trials_per_round=2,
                     verbose=False)

    trials = read_trials(tmp_path / "out").to_pandas()
    assert len(trials) == len(result.records) == 4
    assert sorted(trials["trial"]) == [0, 1, 2, 3] and trials["trial_id"].is_unique
    assert trials.groupby("round").size().to_dict() == {0: 2, 1: 2}
    assert set(trials["status"]) <= {"ok", "degenerate"} and (trials["cost_seconds"] > 0).all()
    decision = result.rounds[0].decision
    assert decision.param in bpe.free and result.rounds[1].decision is None
    round1 = trials[trials["round"] == 1]
    assert (round1[decision.param] == decision.value).all()
    assert result.setting[decision.param] == decision.value
    assert all(result.setting[k] in bpe.choices[k] for k in HYPERPARAMETERS)
    assert -1 <= result.tau <= 1 and math.isfinite(result.rho) and result.cost_seconds > 0
    assert result.device == "cpu" and result.stop_reason == "max rounds (2) reached"
    saved = json.loads((tmp_path / "out" / "bpe_result.json").read_text())
    assert saved["setting"] == result.setting and saved["tau"] == result.tau and saved["trials"] == 4
