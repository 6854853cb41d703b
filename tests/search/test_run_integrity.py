"""A search folder loses nothing and mixes nothing: run identity, one writer at a time, torn journals."""

import json
import os
import shutil
import subprocess
import sys

import optuna
import pytest

from raynas.cli import main
from raynas.errors import ConfigError
from raynas.results import ResultStore
from raynas.results.folder_lock import FolderLock
from raynas.results.report import read_run_metadata
from raynas.search.study import Search, SearchConfig, search
from raynas.space import load_space
from raynas.train import load_checkpoint


@pytest.fixture(scope="module")
def other_checkpoint(trained, tmp_path_factory):
    """The same weights in another checkpoint folder, hence another checkpoint id: a "new" checkpoint."""
    copy = tmp_path_factory.mktemp("other") / "checkpoint_other"
    shutil.copytree(trained.path, copy)
    loaded = load_checkpoint(copy)
    assert loaded.checkpoint_id != trained.checkpoint_id
    return loaded


def config(trials=6, **changes):
    return SearchConfig(**{"trials": trials, "batch_size": 6, "top_k": 0, **changes})


def stored(out):
    return ResultStore(out / "results", load_space("tiny")).to_pandas()


def journal_study(out, run_id):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=run_id, storage=storage)


def assert_one_row_per_trial(out, run_id, trials):
    """Rows 0..trials-1 of ``run_id``, once each, and the journal's trials name the same architectures."""
    table = stored(out)
    ours = table[(table["run_id"] == run_id) & (table["evaluator"] == "bn_score")]
    assert sorted(ours["trial"]) == list(range(trials))
    journal = journal_study(out, run_id).trials
    assert {t.number: t.user_attrs["arch"] for t in journal} == dict(zip(ours["trial"], ours["arch"]))


# --- run identity ---------------------------------------------------------------------------------
def test_resume_under_another_checkpoint_is_refused_and_touches_nothing(trained, other_checkpoint, pool, tmp_path):
    search(trained, pool, tmp_path, config(), progress=False)
    journal, parts = (tmp_path / "study.journal").read_bytes(), sorted((tmp_path / "results").iterdir())
    with pytest.raises(ConfigError) as refused:
        search(other_checkpoint, pool, tmp_path, config(trials=12), progress=False)
    message = str(refused.value)
    assert (f"holds search 'search' scored with checkpoint_id={trained.checkpoint_id!r}; resuming it with "
            f"checkpoint_id={other_checkpoint.checkpoint_id!r} would mix") in message
    assert "pass another --out, or --new-run" in message
    assert (tmp_path / "study.journal").read_bytes() == journal and sorted((tmp_path / "results").iterdir()) == parts
    assert read_run_metadata(tmp_path)["checkpoint_id"] == trained.checkpoint_id


def test_the_refusal_names_every_field_that_differs(trained, pool, tmp_path):
    search(trained, pool, tmp_path, config(), progress=False)
    changed = config(trials=12, sampler="random", seed=3, objectives=("bn_score", "params"),
                     constraints=("flops<=1e9",))
    with pytest.raises(ConfigError) as refused:
        search(trained, pool, tmp_path, changed, progress=False)
    message = str(refused.value)
    assert ("scored with sampler='nsga2', seed=0, objectives=['bn_score', 'flops'], constraints=[]; resuming it "
            "with sampler='random', seed=3, objectives=['bn_score', 'params'], constraints=['flops<=1e+09']") in message
    assert "checkpoint_id" not in message and "population" not in message  # random has no population


def test_more_trials_another_batch_size_and_top_k_resume_the_same_run(trained, pool, tmp_path):
    first = search(trained, pool, tmp_path, config(), progress=False)
    before = stored(first.out_dir)
    identity = read_run_metadata(tmp_path)["runs"]["search"]
    result = search(trained, pool, tmp_path, config(trials=10, batch_size=4, top_k=2), progress=False)
    assert len(result.study.trials) == 10 and len(result.calibrated) == 2
    assert_one_row_per_trial(tmp_path, "search", 10)
    after = stored(tmp_path).set_index(["trial", "evaluator"])
    assert after.loc[[(t, "bn_score") for t in before["trial"]], "arch"].tolist() == before["arch"].tolist()
    assert read_run_metadata(tmp_path)["runs"]["search"] == identity
    assert {"checkpoint_id", "space", "space_hash", "evaluator", "sampler", "seed", "population", "objectives",
            "constraints", "depth_rule", "calib_images", "calib_seed", "config_hash"} == set(identity)
    assert identity["checkpoint_id"] == trained.checkpoint_id and identity["depth_rule"] == "sum"


def test_another_run_id_starts_a_fresh_study_and_copies_no_rows(trained, pool, tmp_path):
    search(trained, pool, tmp_path, config(trials=8, run_id="a"), progress=False)
    before = stored(tmp_path)
    result = search(trained, pool, tmp_path, config(trials=5, run_id="b", seed=1), progress=False)
    assert len(result.study.trials) == 5
    assert_one_row_per_trial(tmp_path, "a", 8)
    assert_one_row_per_trial(tmp_path, "b", 5)
    table = stored(tmp_path)
    assert table[table["run_id"] == "a"].reset_index(drop=True).equals(before)
    assert set(read_run_metadata(tmp_path)["runs"]) == {"a", "b"}


def test_top_k_calibrates_only_its_own_runs_rows(trained, pool, tmp_path):
    search(trained, pool, tmp_path, config(trials=12, top_k=3, run_id="a"), progress=False)
    result = search(trained, pool, tmp_path, config(trials=12, top_k=3, run_id="b", seed=1), progress=False)
    table = stored(tmp_path)
    own = table[(table["run_id"] == "b") & (table["evaluator"] == "bn_score") & (table["status"] == "ok")]
    assert len(result.calibrated) == 3
    assert {r["run_id"] for r in result.calibrated} == {"b"} and {r["arch"] for r in result.calibrated} <= set(own["arch"])
    assert ((table["run_id"] == "b") & (table["evaluator"] == "calibrate")).sum() == 3


def test_without_run_json_the_rows_still_tell_which_checkpoint(trained, other_checkpoint, pool, tmp_path):
    search(trained, pool, tmp_path, config(), progress=False)
    (tmp_path / "run.json").unlink()
    (tmp_path / "study.journal").unlink()
    with pytest.raises(ConfigError, match=rf"scored with checkpoint_id={trained.checkpoint_id!r}"):
        search(other_checkpoint, pool, tmp_path, config(trials=9), progress=False)
    search(trained, pool, tmp_path, config(trials=9), progress=False)  # the same checkpoint resumes
    assert_one_row_per_trial(tmp_path, "search", 9)


def test_a_run_json_from_before_identities_is_still_checked(trained, other_checkpoint, pool, tmp_path):
    search(trained, pool, tmp_path, config(constraints=("flops<=4e5",)), progress=False)
    meta = read_run_metadata(tmp_path)
    del meta["runs"]
    meta["search"]["constraints"] = ["flops <= 4e5"]  # as typed: compared by meaning
    (tmp_path / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=rf"scored with checkpoint_id={trained.checkpoint_id!r};"):
        search(other_checkpoint, pool, tmp_path, config(trials=9, constraints=("flops<=4e5",)), progress=False)
    search(trained, pool, tmp_path, config(trials=9, constraints=("flops<=4e5",)), progress=False)
    assert_one_row_per_trial(tmp_path, "search", 9)


def test_cli_refuses_before_starting_actors_or_writes_a_fresh_sub_folder(trained, other_checkpoint, pool, tmp_path,
                                                                        capsys):
    search(trained, pool, tmp_path / "out", config(trials=4), progress=False)
    common = ["--trials", "4", "--search-batch", "4", "--top-k", "0", "--actors", "1", "--actor-cpus", "0.5",
              "--calib-images", "32", "--out", str(tmp_path / "out")]
    assert main(["search", str(other_checkpoint.path), *common]) == 2
    assert "would mix two searches' results: pass another --out, or --new-run" in capsys.readouterr().err
    with FolderLock(tmp_path / "out"):
        assert main(["search", str(trained.path), *common]) == 2
    assert f"is in use by another search (pid {os.getpid()} on " in capsys.readouterr().err
    assert main(["search", str(other_checkpoint.path), *common, "--new-run"]) == 0
    assert f"4 trials in {tmp_path / 'out' / 'run-1'}" in capsys.readouterr().out
    assert read_run_metadata(tmp_path / "out" / "run-1")["checkpoint_id"] == other_checkpoint.checkpoint_id
    assert read_run_metadata(tmp_path / "out")["checkpoint_id"] == trained.checkpoint_id


# --- one writer per folder ------------------------------------------------------------------------
def test_a_second_search_on_a_folder_in_use_is_refused(trained, pool, tmp_path):
    first = Search(trained, pool, tmp_path, config(trials=6))
    with pytest.raises(ConfigError, match=rf"{tmp_path} is in use by another search \(pid {os.getpid()} on "):
        Search(trained, pool, tmp_path, config(trials=6))
    first.run(progress=False)
    search(trained, pool, tmp_path, config(trials=12), progress=False)  # the lock went with the first run
    assert_one_row_per_trial(tmp_path, "search", 12)


class FlakySampler(optuna.samplers.RandomSampler):
    """A user's sampler that fails from trial ``fail_from`` on (None: never)."""

    def __init__(self, fail_from=None):
        super().__init__(seed=0)
        self.fail_from = fail_from

    def sample_independent(self, study, trial, param_name, param_distribution):
        if self.fail_from is not None and trial.number >= self.fail_from:
            raise RuntimeError("the sampler broke")
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_a_search_that_raises_releases_its_folder_and_resumes(trained, pool, tmp_path):
    with pytest.raises(RuntimeError, match="the sampler broke"):
        Search(trained, pool, tmp_path, config(trials=12, sampler=FlakySampler(fail_from=6))).run(progress=False)
    result = Search(trained, pool, tmp_path, config(trials=12, sampler=FlakySampler())).run(progress=False)
    assert len(result.study.trials) == 12
    assert_one_row_per_trial(tmp_path, "search", 12)


def test_a_search_that_is_closed_unrun_releases_its_folder(trained, pool, tmp_path):
    with Search(trained, pool, tmp_path, config()):
        pass
    with Search(trained, pool, tmp_path, config()) as again:
        again.run(progress=False)
    with pytest.raises(ConfigError, match="has ended"):
        again.run(progress=False)


HOLDER = "import sys, time; from raynas.results.folder_lock import FolderLock; " \
         "lock = FolderLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)"


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by another search \(pid {holder.pid} on "):
            FolderLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(tmp_path) as lock:
        assert lock.held
    assert not lock.held


# --- a torn journal -------------------------------------------------------------------------------
def tear_last_line(lines):
    """A crash mid-append: the last record cut in half, no newline."""
    return b"".join(lines) + lines[-1][: len(lines[-1]) // 2], lines[-1][: len(lines[-1]) // 2]


def tear_and_append(lines):
    """A torn record, then later appends glued onto it (what an old resume left behind)."""
    cut = len(lines) - 3
    torn = lines[cut][: len(lines[cut]) // 2] + b"".join(lines[cut + 1:])
    return b"".join(lines[:cut]) + torn, torn


@pytest.mark.parametrize("tear", [tear_last_line, tear_and_append])
def test_a_torn_journal_is_cut_back_and_refilled_from_parquet(trained, pool, tmp_path, tear):
    search(trained, pool, tmp_path, config(trials=12, run_id="torn"), progress=False)
    journal = tmp_path / "study.journal"
    text, dropped = tear(journal.read_bytes().splitlines(keepends=True))
    journal.write_bytes(text)
    result = search(trained, pool, tmp_path, config(trials=18, run_id="torn"), progress=False)
    assert len(result.study.trials) == 18
    assert {t.state for t in result.study.trials} == {optuna.trial.TrialState.COMPLETE}
    assert_one_row_per_trial(tmp_path, "torn", 18)
    [note] = tmp_path.glob("study.journal.torn-*")
    assert note.read_bytes() == dropped
    search(trained, pool, tmp_path, config(trials=18, run_id="torn"), progress=False)  # intact now: no new note
    assert len(list(tmp_path.glob("study.journal.torn-*"))) == 1
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())
