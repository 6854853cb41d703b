"""The latency table: which entries a child sums, files and cache, clear errors, the CLI, and
the bookkeeping of the benchmark that measures how well it ranks real end-to-end latency
(the figure itself lives in ``benchmarks/RESULTS.md``: a timing threshold would flake here)."""

import functools
import json
import random
import re

import numpy as np
import pytest
import torch

from raynas.cli import main
from raynas.errors import ConfigError
from raynas.estimate import latency
from raynas.estimate.latency import (
    LatencyTable,
    MissingLatencyEntryError,
    cache_path,
    cached_latency_table,
    child_signatures,
    device_key,
    flops_stratified_sample,
    measure_children_ms,
    measure_end_to_end,
    measure_latency_table,
    num_threads,
    table_signatures,
)
from raynas.space import SearchSpace, load_space
from raynas.supernet import build_supernet

QUICK = {"repeats": 2, "warmup": 0, "rounds": 1}  # fast tests check plumbing, not timing quality
BIG_ARCH = "r16-s12-w16d2:k5e3,k3e1-w24d1:k3e4-h48"
BIG_ARCH_BLOCKS = [  # written out by hand from the tiny space file: stride 2 per stage, 16 -> 8 -> 4
    ("stem", 12, 16),
    ("block", 0, 12, 16, 5, 3, 16, 2),
    ("block", 0, 16, 16, 3, 1, 8, 1),
    ("block", 1, 16, 24, 3, 4, 8, 2),
    ("head", 24, 48, 4),
]
MIN_ARCH_BLOCKS = [("stem", 8, 12), ("block", 0, 8, 8, 3, 1, 12, 2), ("block", 1, 8, 16, 3, 2, 6, 2), ("head", 16, 32, 3)]


@functools.cache
def space(name: str) -> SearchSpace:
    return load_space(name)


def synthetic_table(name: str) -> LatencyTable:
    """Every signature of the space with a distinct value, so a wrong lookup changes the sum."""
    signatures = table_signatures(space(name))
    values = np.random.default_rng(0).permutation(len(signatures)) + 1.0
    return LatencyTable("test-device", name, dict(zip(signatures, values.tolist())), resolutions=(12, 16))


@pytest.fixture(scope="module")
def tiny_table() -> LatencyTable:
    return measure_latency_table(space("tiny"), **QUICK)


# --- which entries a child sums -------------------------------------------------------------------
def test_child_signatures_are_the_blocks_the_child_runs():
    tiny = space("tiny")
    assert child_signatures(tiny, tiny.arch(BIG_ARCH)) == BIG_ARCH_BLOCKS
    assert child_signatures(tiny, tiny.min()) == MIN_ARCH_BLOCKS


def test_predict_is_the_sum_of_the_right_entries():
    tiny, table = space("tiny"), synthetic_table("tiny")
    archs = [tiny.arch(BIG_ARCH), tiny.min()]
    expected = [sum(table.entries[s] for s in BIG_ARCH_BLOCKS), sum(table.entries[s] for s in MIN_ARCH_BLOCKS)]
    np.testing.assert_array_equal(table.predict(tiny, archs), expected)
    np.testing.assert_array_equal(table.predict(tiny, tiny.index_matrix(archs)), expected)


@pytest.mark.parametrize("name", ["mbv3_cifar", "nb201"])
def test_vectorised_predict_equals_per_child_sums(name):
    sp, table = space(name), synthetic_table(name)
    archs = [sp.sample(random.Random(seed)) for seed in range(200)] + [sp.min(), sp.max()]
    expected = [sum(table.entries[s] for s in child_signatures(sp, a)) for a in archs]
    np.testing.assert_allclose(table.predict(sp, archs), expected, rtol=1e-12)


def test_table_holds_exactly_the_blocks_of_every_tiny_child():
    """Measurement enumerates a covering set of rows; it must miss nothing and waste nothing."""
    tiny = space("tiny")
    used = set()
    for arch in tiny.enumerate():
        used.update(child_signatures(tiny, arch))
    assert used == set(table_signatures(tiny))


def test_nb201_child_sums_one_entry_per_edge_per_cell():
    nb = space("nb201")
    sigs = child_signatures(nb, nb.max())
    assert len(sigs) == 1 + 2 + 1 + 3 * nb.spec.cells_per_stage * 6
    assert sigs.count(("cell_op", 2, "nor_conv_3x3", 64, 8)) == 6 * nb.spec.cells_per_stage


def test_probes_are_the_modules_an_exported_child_runs():
    """The table times blocks built from ``supernet/blocks.py``; they must equal exported ones."""
    for name in ["tiny", "mbv3_cifar"]:
        sp = space(name)
        net = build_supernet(sp, num_classes=10)
        for arch in [sp.min(), sp.max(), *(sp.sample(random.Random(seed)) for seed in range(5))]:
            child = net.export(arch)
            parts = [child.stem, *child.blocks, child.head]
            for sig, part in zip(child_signatures(sp, arch), parts, strict=True):
                probe = latency.latency_parts(sp).probe(sp, sig, 10, 3)
                assert repr(probe.module) == repr(part), sig
                assert getattr(probe.module, "stride", None) == getattr(part, "stride", None), sig


# --- errors -------------------------------------------------------------------------------------
def test_missing_entry_names_the_block_and_how_to_measure_it():
    tiny, table = space("tiny"), synthetic_table("tiny")
    missing = ("block", 1, 16, 24, 3, 4, 8, 2)
    del table.entries[missing]
    table.predict(tiny, [tiny.min()])  # other children still work
    with pytest.raises(MissingLatencyEntryError) as err:
        table.predict(tiny, [tiny.min(), tiny.arch(BIG_ARCH)])
    message = str(err.value)
    assert str(missing) in message and BIG_ARCH in message
    assert "raynas latency tiny --resolution 16" in message


def test_a_restricted_table_serves_its_resolutions_only():
    tiny = space("tiny")
    table = measure_latency_table(tiny, resolutions=[12], **QUICK)
    assert table.resolutions == (12,) and all(s[-1] != 16 for s in table.entries if s[0] == "stem")
    assert table.predict(tiny, [tiny.min()])[0] > 0
    with pytest.raises(MissingLatencyEntryError, match="covers resolutions \\[12\\]"):
        table.predict(tiny, [tiny.arch(BIG_ARCH)])
    with pytest.raises(ConfigError, match="non-empty subset of \\[12, 16\\]"):
        measure_latency_table(tiny, resolutions=[13], **QUICK)


def test_a_table_of_another_space_is_refused():
    with pytest.raises(ConfigError, match="measured for space 'tiny', not 'mbv3_cifar'"):
        synthetic_table("tiny").predict(space("mbv3_cifar"), [space("mbv3_cifar").min()])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="torch.cuda.is_available\\(\\) is False"):
        measure_latency_table(space("tiny"), device="cuda", **QUICK)


def test_a_file_that_is_not_a_table_is_a_clear_error(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a latency table"):
        LatencyTable.load(path)


# --- files, cache, device key -----------------------------------------------------------------------
def test_save_load_round_trip(tiny_table, tmp_path):
    path = tiny_table.save(tmp_path / "sub" / "tiny.json")
    loaded = LatencyTable.load(path)
    assert loaded == tiny_table
    assert len(loaded.entries) == len(table_signatures(space("tiny"))) == 108
    assert [p.name for p in path.parent.iterdir()] == ["tiny.json"]  # no temp file left behind
    np.testing.assert_array_equal(loaded.predict(space("tiny"), [space("tiny").max()]),
                                  tiny_table.predict(space("tiny"), [space("tiny").max()]))


def test_cache_hit_does_not_measure_again(tmp_path, monkeypatch):
    tiny = space("tiny")
    first = cached_latency_table(tiny, "cpu", tmp_path, **QUICK)
    path = cache_path(tiny, "cpu", tmp_path)
    assert path.name == f"tiny-{device_key('cpu')}.json" and path.is_file()
    stamp = path.stat().st_mtime_ns

    def must_not_measure(*args, **kwargs):
        raise AssertionError("a cache hit measured again")

    monkeypatch.setattr(latency, "measure_latency_table", must_not_measure)
    assert cached_latency_table(tiny, "cpu", tmp_path, **QUICK) == first
    assert path.stat().st_mtime_ns == stamp


def test_cache_measures_again_for_another_setting(tmp_path, monkeypatch):
    tiny = space("tiny")
    cached_latency_table(tiny, "cpu", tmp_path, resolutions=[12], **QUICK)
    calls = []
    real = latency.measure_latency_table
    monkeypatch.setattr(latency, "measure_latency_table", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert cached_latency_table(tiny, "cpu", tmp_path, resolutions=[12], **QUICK).resolutions == (12,)
    assert not calls
    assert cached_latency_table(tiny, "cpu", tmp_path, **QUICK).resolutions == (12, 16)  # more resolutions
    assert cached_latency_table(tiny, "cpu", tmp_path, batch_size=2, **QUICK).batch_size == 2
    assert len(calls) == 2


def test_device_key_is_a_filename_and_records_the_thread_count():
    before = torch.get_num_threads()
    key = device_key("cpu")
    assert re.fullmatch(r"cpu-[A-Za-z0-9._-]+-t\d+", key) and key.endswith(f"-t{before}")
    with num_threads(1):
        assert device_key("cpu").endswith("-t1")
    assert torch.get_num_threads() == before


# --- measuring ------------------------------------------------------------------------------------------
def test_measured_entries_are_positive_and_keyed_by_this_device(tiny_table):
    assert all(ms > 0 for ms in tiny_table.entries.values())
    assert tiny_table.device_key == device_key("cpu") and tiny_table.meta["rounds"] == 1


def test_nb201_table_measures_every_stage_op():
    nb = space("nb201")
    table = measure_latency_table(nb, **QUICK)
    assert len(table.entries) == 3 * len(nb.spec.ops) + 4
    assert table.predict(nb, [nb.min(), nb.max()]).min() > 0


def test_end_to_end_leaves_the_callers_module_alone():
    tiny = space("tiny")
    child = build_supernet(tiny, 10).export(tiny.max()).train()
    ms = measure_end_to_end(child, 16, **QUICK)
    assert ms > 0 and child.training
    assert measure_children_ms([child, child], [12, 16], **QUICK).shape == (2,)


def test_flops_stratified_sample_is_spread_and_reproducible():
    sp = space("mbv3_cifar")
    archs = flops_stratified_sample(sp, 30, seed=0)
    assert archs == flops_stratified_sample(sp, 30, seed=0) and len(set(archs)) == 30
    from raynas.cost import CostModel

    flops = CostModel(sp).flops(archs)
    assert np.all(np.diff(flops) >= 0)  # one per quantile, in order


def test_bf16_channels_last_table_has_the_same_entries_under_its_own_key(tiny_table, tmp_path):
    tiny = space("tiny")
    table = measure_latency_table(tiny, amp="bf16", channels_last=True, **QUICK)
    assert set(table.entries) == set(tiny_table.entries) and all(ms > 0 for ms in table.entries.values())
    assert table.device_key == device_key("cpu", "bf16", True) == tiny_table.device_key + "-bf16-cl"
    assert (table.meta["amp"], table.meta["channels_last"]) == ("bf16", True)
    assert cache_path(tiny, "cpu", tmp_path, amp="bf16") != cache_path(tiny, "cpu", tmp_path)
    assert measure_end_to_end(build_supernet(tiny, 10).export(tiny.min()), 12, amp="bf16", channels_last=True,
                              **QUICK) > 0


def test_an_unknown_precision_is_a_clear_error():
    with pytest.raises(ConfigError, match="amp must be one of \\['off', 'bf16'\\], got 'fp8'"):
        measure_latency_table(space("tiny"), amp="fp8", **QUICK)
    with pytest.raises(ConfigError, match="channels_last must be true or false, got 'yes'"):
        device_key("cpu", channels_last="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_table():
    table = measure_latency_table(space("tiny"), device="cuda", **QUICK)
    assert table.device_key.startswith("cuda-") and all(ms > 0 for ms in table.entries.values())


# --- the command line ------------------------------------------------------------------------------------
def test_cli_writes_a_table(tmp_path, capsys):
    out = tmp_path / "tiny.json"
    assert main(["latency", "tiny", "--out", str(out)]) == 0
    table = LatencyTable.load(out)
    assert table.space == "tiny" and len(table.entries) == 108
    printed = capsys.readouterr().out
    assert "measured 108 block entries of tiny" in printed and table.device_key in printed


def test_cli_measures_in_the_asked_precision(tmp_path, capsys):
    out = tmp_path / "tiny.json"
    argv = ["latency", "tiny", "--device", "cpu", "--amp", "bf16", "--channels-last", "--repeats", "1", "--rounds", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    table = LatencyTable.load(out)
    assert table.device_key.endswith("-bf16-cl") and table.device_key in capsys.readouterr().out


def test_cli_reports_a_bad_resolution(tmp_path, capsys):
    assert main(["latency", "tiny", "--resolution", "13", "--out", str(tmp_path / "x.json")]) == 2
    assert "non-empty subset of [12, 16]" in capsys.readouterr().err


# --- the table ranks real latencies -------------------------------------------------------------------------
def test_latency_benchmark_compares_table_and_end_to_end_timing():
    """How well the table ranks real latency is a timing figure: ``benchmarks/latency_table.py``
    measures it (RESULTS.md) and no threshold on it belongs in a test, where a loaded machine
    would fail it. This checks the benchmark's bookkeeping, which cannot flake: every child is
    timed twice, its prediction is the table's sum for it, and the summary is computed from them."""
    from scipy.stats import spearmanr

    from benchmarks.latency_table import evaluate

    sp = space("tiny")
    row = evaluate(sp, 6, "cpu", seed=0, timing={"repeats": 2, "rounds": 1})
    children = row["children"]
    assert len(children) == row["n"] == 6 and len({c["arch"] for c in children}) == 6
    assert all(len(c["measured_ms"]) == 2 and min(c["measured_ms"]) > 0 for c in children)
    predicted = np.array([c["predicted_ms"] for c in children])
    measured = np.array([np.mean(c["measured_ms"]) for c in children])
    assert row["spearman"] == pytest.approx(spearmanr(predicted, measured).statistic)
    assert row["entries"] > 0 and row["meas/pred"] == pytest.approx(float(np.median(measured / predicted)))
