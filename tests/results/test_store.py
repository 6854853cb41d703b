"""The Parquet result store: schema, round trips, resume, crash safety, version checks."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from raynas.results import FIXED_COLUMNS, SCHEMA_VERSION, ResultsError, ResultStore, result_schema
from raynas.space import load_space

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


@pytest.fixture(scope="module")
def nb201():
    return load_space("nb201")


def make_rows(space, run_id="run-a", n=8, seed=0, evaluator="bn_score", full=True):
    """``n`` evaluated rows of distinct random archs; ``full`` fills every optional metric."""
    rng = random.Random(seed)
    rows = []
    for trial in range(n):
        row = {
            "run_id": run_id, "trial": trial, "arch": space.sample(rng), "status": "ok",
            "evaluator": evaluator, "bn_score": rng.random(),
        }
        if full:
            row.update(
                accuracy=rng.random(), split="val", top5=rng.random(), loss=rng.random() * 3, flops=1_000_000 + trial,
                params=50_000 + trial, latency_ms=1.5, calib_images=256, checkpoint_id="ckpt-1",
                sampler="nsga2", seed=seed, started_at=time.time(), finished_at=time.time() + 0.1,
                eval_seconds=0.1, node_id="node-0",
            )
        rows.append(row)
    return rows


# --- schema -------------------------------------------------------------------------------
def test_schema_is_fixed_columns_then_one_typed_column_per_dimension(tiny, nb201):
    for space, dim_type in ((tiny, pa.int64()), (nb201, pa.string())):
        schema = result_schema(space)
        assert schema.names == [*FIXED_COLUMNS, *space.names]
        assert all(schema.field(d).type == dim_type and schema.field(d).nullable for d in space.names)
        assert schema.metadata[b"raynas.schema_version"] == str(SCHEMA_VERSION).encode()
    assert result_schema(tiny).field("flops").type == pa.int64()
    assert not result_schema(tiny).field("run_id").nullable


# --- round trips --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "nb201"])
def test_round_trip_through_pyarrow_and_pandas(tmp_path, name):
    space = load_space(name)
    store = ResultStore(tmp_path / "results", space)
    rows = make_rows(space, n=12)
    result = store.write_batch(rows)
    assert (result.written, result.skipped) == (12, 0)
    assert Path(result.path).name.startswith("part-") and Path(result.path).parent == tmp_path / "results"

    table = store.read()
    assert table.schema.names == result_schema(space).names
    for row, got in zip(rows, table.to_pylist()):
        assert got["arch"] == space.key(row["arch"])
        assert {d: got[d] for d in space.names} == space.encode(row["arch"])
        for column in ("run_id", "trial", "status", "evaluator", "bn_score", "flops", "latency_ms", "node_id"):
            assert got[column] == row[column]

    frame = store.to_pandas()
    assert len(frame) == 12
    for (_, got), row in zip(frame.iterrows(), rows):
        assert space.decode(got.to_dict()) == row["arch"]
        assert space.arch(got["arch"]) == row["arch"]


def test_nb201_arch_column_is_the_standard_string(tmp_path, nb201):
    store = ResultStore(tmp_path, nb201)
    key = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    store.write_batch([{"run_id": "r", "trial": 0, "arch": key, "status": "ok", "evaluator": "bn_score"}])
    got = store.read().to_pylist()[0]
    assert got["arch"] == key
    assert got["edge_1_2"] == "avg_pool_3x3" and got["edge_2_3"] == "skip_connect"


def test_inactive_dimensions_are_null_columns(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    shallow = tiny.min()  # depth 1 everywhere: every block-1 dimension is inactive
    store.write_batch([{"run_id": "r", "trial": 0, "arch": shallow, "status": "ok", "evaluator": "bn_score"}])
    table = store.read()
    inactive = [d for d in tiny.names if d not in shallow]
    assert inactive and "s0_b1_kernel" in inactive
    for d in tiny.names:
        assert table.column(d).null_count == (1 if d in inactive else 0), d


def test_sparse_later_batch_keeps_every_column(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    sparse = store.write_batch(make_rows(tiny, run_id="sparse", n=3, full=False))
    store.write_batch(make_rows(tiny, run_id="full", n=3, full=True))

    # each file carries the full schema, so even schema inference from the first file keeps them
    assert pq.read_schema(sparse.path).names == result_schema(tiny).names
    inferred = ds.dataset(str(tmp_path), format="parquet").to_table()
    assert "accuracy" in inferred.column_names and "latency_ms" in inferred.column_names

    table = store.read()
    assert table.num_rows == 6
    by_run = {r: [row for row in table.to_pylist() if row["run_id"] == r] for r in ("sparse", "full")}
    assert all(row["accuracy"] is None and row["calib_images"] is None for row in by_run["sparse"])
    assert all(row["accuracy"] is not None and row["calib_images"] == 256 for row in by_run["full"])


def test_empty_store_reads_as_empty_table_with_schema(tmp_path, tiny):
    store = ResultStore(tmp_path / "never-written", tiny)
    table = store.read()
    assert table.num_rows == 0 and table.schema.names == result_schema(tiny).names
    assert store.trials() == set()
    assert store.write_batch([]).written == 0


def test_read_selected_columns(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    store.write_batch(make_rows(tiny, n=4))
    assert store.read(["arch", "flops"]).column_names == ["arch", "flops"]
    with pytest.raises(ResultsError, match="unknown column 'flop'"):
        store.read(["flop"])


# --- crash safety -------------------------------------------------------------------------
def test_leftover_tmp_file_is_ignored(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    store.write_batch(make_rows(tiny, n=5))
    (tmp_path / ".tmp-0123456789abcdef.parquet").write_bytes(b"PAR1 half a footer \x00\x01\x02")
    assert store.read().num_rows == 5
    assert store.write_batch(make_rows(tiny, run_id="run-b", n=2)).written == 2
    assert store.read().num_rows == 7


def test_sigkilled_writer_leaves_only_whole_batches(tmp_path):
    batch = 3000
    code = (
        "import sys\n"
        "from raynas.results import ResultStore\n"
        "from raynas.space import load_space\n"
        "space = load_space('tiny')\n"
        "store = ResultStore(sys.argv[1], space)\n"
        f"archs = [space.sample(i) for i in range({batch})]\n"
        "b = 0\n"
        "while True:\n"
        "    store.write_batch([{'run_id': f'b{b}', 'trial': t, 'arch': a, 'status': 'ok',\n"
        "                        'evaluator': 'bn_score', 'bn_score': 0.1 * t} for t, a in enumerate(archs)])\n"
        "    b += 1\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while sum(n.startswith("part-") for n in os.listdir(tmp_path)) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "writer produced fewer than 3 batches in 60 s"
            time.sleep(0.005)
        # then aim the kill at a write in flight: between the temp file's creation and its rename
        aim = time.monotonic() + 5
        while time.monotonic() < aim and not any(n.startswith(".tmp-") for n in os.listdir(tmp_path)):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    store = ResultStore(tmp_path, load_space("tiny"))
    parts = store.parts()
    assert len(parts) >= 3
    table = store.read(["run_id", "trial"])
    assert table.num_rows == batch * len(parts)
    runs = {}
    for run_id, trial in zip(table.column("run_id").to_pylist(), table.column("trial").to_pylist()):
        runs.setdefault(run_id, []).append(trial)
    assert sorted(runs) == sorted(f"b{i}" for i in range(len(parts)))  # no batch missing before the last
    assert all(sorted(trials) == list(range(batch)) for trials in runs.values())


# --- resume and duplicates ----------------------------------------------------------------
def test_skip_existing_makes_rewrites_idempotent(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    rows = make_rows(tiny, n=6)
    assert store.write_batch(rows[:4]).written == 4

    again = store.write_batch(rows)  # a resumed search re-submits the whole batch
    assert (again.written, again.skipped) == (2, 4)
    nothing = store.write_batch(rows)
    assert (nothing.path, nothing.written, nothing.skipped) == (None, 0, 6)
    assert len(store.parts()) == 2

    fresh = ResultStore(tmp_path, tiny)  # a restarted driver sees what the old one wrote
    assert fresh.trials() == {("run-a", t) for t in range(6)}
    assert fresh.write_batch(rows).written == 0
    table = fresh.read()
    assert table.num_rows == 6 and sorted(table.column("trial").to_pylist()) == list(range(6))


def test_other_evaluator_of_a_stored_trial_is_new(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    store.write_batch(make_rows(tiny, n=3, evaluator="bn_score"))
    assert store.write_batch(make_rows(tiny, n=3, evaluator="calibrate")).written == 3
    assert len(store.keys()) == 6 and len(store.trials()) == 3


def test_skip_existing_false_appends_duplicates(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    rows = make_rows(tiny, n=3)
    store.write_batch(rows)
    assert store.write_batch(rows, skip_existing=False).written == 3
    assert store.read().num_rows == 6


def test_batch_repeating_a_key_is_refused(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    rows = make_rows(tiny, n=2)
    rows[1]["trial"] = 0
    with pytest.raises(ResultsError, match=r"must not repeat .*\('run-a', 0, 'bn_score'\)"):
        store.write_batch(rows)
    assert store.parts() == []


# --- bad rows -----------------------------------------------------------------------------
def test_unknown_column_names_the_key_and_the_valid_columns(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    rows = make_rows(tiny, n=2)
    rows[1]["acuracy"] = 0.5
    with pytest.raises(ResultsError) as err:
        store.write_batch(rows)
    message = str(err.value)
    assert "row 1" in message and "'acuracy'" in message
    assert "accuracy" in message and "s0_b1_kernel" in message
    assert store.parts() == []  # nothing of a bad batch is written


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"flops": 2.5}, r"column 'flops' needs int64, got 2.5"),
        ({"trial": "3"}, r"column 'trial' needs int64, got '3'"),
        ({"accuracy": "high"}, r"column 'accuracy' needs double"),
        ({"status": "done"}, r"status must be one of \['ok', 'failed', 'infeasible', 'duplicate'\], got 'done'"),
        ({"evaluator": None}, r"required column 'evaluator' is missing"),
        ({"arch": "r99-nonsense"}, r"arch 'r99-nonsense' is not in space 'tiny'"),
        ({"resolution": 12, "arch": "r16-s12-w8d2:k5e3,k5e3-w24d1:k3e4-h32"}, r"'resolution' must match arch"),
    ],
)
def test_bad_values_are_refused_with_the_rule_and_the_value(tmp_path, tiny, change, pattern):
    row = {**make_rows(tiny, n=1)[0], **change}
    with pytest.raises(ResultsError, match=pattern):
        ResultStore(tmp_path, tiny).write_batch([row])


def test_rows_from_pandas_nan_conventions_are_accepted(tmp_path, tiny):
    """Rows read back through pandas (NaN for nulls, floats for ints) can be written again.

    NaN becomes null in integer and string columns; a float column keeps NaN as a value.
    """
    source = ResultStore(tmp_path / "a", tiny)
    source.write_batch(make_rows(tiny, n=4, full=False))
    records = source.to_pandas().to_dict("records")
    copy = ResultStore(tmp_path / "b", tiny)
    assert copy.write_batch(records).written == 4
    pd.testing.assert_frame_equal(copy.to_pandas(), source.to_pandas())
    table = copy.read()
    assert table.column("flops").null_count == 4 and table.column("s0_b1_kernel").null_count > 0
    assert table.column("error").null_count == 4 and table.column("node_id").null_count == 4
    assert table.column("accuracy").null_count == 0 and all(math.isnan(v) for v in table.column("accuracy").to_pylist())


# --- versions and foreign stores ----------------------------------------------------------
def test_other_schema_version_is_refused(tmp_path, tiny):
    store = ResultStore(tmp_path, tiny)
    store.write_batch(make_rows(tiny, n=2))
    schema = result_schema(tiny)
    future = schema.with_metadata({**schema.metadata, b"raynas.schema_version": b"999"})
    table = store.read().cast(future)
    pq.write_table(table, tmp_path / "part-99999999999999999999-future.parquet")
    with pytest.raises(ResultsError, match=r"schema version 999, but this raynas reads version 2"):
        store.read()
    with pytest.raises(ResultsError, match="schema version 999"):
        ResultStore(tmp_path, tiny).write_batch(make_rows(tiny, run_id="new", n=1))


def test_a_part_written_before_a_column_was_added_still_reads(tmp_path, tiny):
    """A results folder from before ``estimate`` existed reads, resumes and takes new rows beside its old ones."""
    store = ResultStore(tmp_path, tiny)
    store.write_batch(make_rows(tiny, n=3))
    old = store.read().drop_columns(["estimate"])
    for part in store.parts():
        os.remove(part)
    pq.write_table(old, tmp_path / "part-00000000000000000001-old.parquet")
    reopened = ResultStore(tmp_path, tiny)
    assert reopened.read().column("estimate").null_count == 3 and len(reopened.keys()) == 3
    assert reopened.write_batch([{**r, "estimate": 0.5} for r in make_rows(tiny, run_id="new", n=2)]).written == 2
    table = reopened.to_pandas()
    assert table["estimate"].isna().sum() == 3 and (table.loc[table["run_id"] == "new", "estimate"] == 0.5).all()
    assert reopened.to_pandas(columns=["run_id", "bn_score"]).shape == (5, 2)


def test_store_of_another_space_is_refused(tmp_path, tiny, nb201):
    ResultStore(tmp_path, tiny).write_batch(make_rows(tiny, n=2))
    with pytest.raises(ResultsError, match=r"columns must match space 'nb201'.*missing=\['edge_0_1'"):
        ResultStore(tmp_path, nb201).read()


def test_parquet_file_without_raynas_metadata_is_refused(tmp_path, tiny):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "part-0-foreign.parquet")
    with pytest.raises(ResultsError, match="not a raynas results file"):
        ResultStore(tmp_path, tiny).read()


# --- filesystems --------------------------------------------------------------------------
def test_uri_root_uses_the_pyarrow_filesystem(tmp_path, tiny):
    store = ResultStore(f"file://{tmp_path}/uri", tiny)
    assert isinstance(store.fs, pafs.LocalFileSystem)
    store.write_batch(make_rows(tiny, n=3))
    assert ResultStore(tmp_path / "uri", tiny).read().num_rows == 3


def test_non_local_filesystem_writes_parts_directly(tmp_path, tiny):
    """The object-store path: no temp file, the part appears under its final name."""
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    store = ResultStore("bucket/results", tiny, filesystem=fs)
    result = store.write_batch(make_rows(tiny, n=3))
    assert result.path.startswith("bucket/results/part-")
    assert [p.name for p in (tmp_path / "bucket" / "results").iterdir()] == [Path(result.path).name]
    assert store.read().num_rows == 3
    assert math.isclose(sum(store.read(["bn_score"]).column(0).to_pylist()),
                        sum(r["bn_score"] for r in make_rows(tiny, n=3)))
