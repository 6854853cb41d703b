"""Searches with a training-free estimator (objective ``estimate``): over a space at seeded
initialisation, rows that equal ``raynas score``'s, resume and refusals."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from raynas.cli import main
from raynas.errors import ConfigError
from raynas.estimate.training_free.fusion import LogRankFusion
from raynas.model_record import DataInfo, ModelRecord
from raynas.search.pool import PoolConfig, UntrainedSupernet
from raynas.search.study import SearchConfig, search_identity
from raynas.space import space_from_dict

SMALL_NB201 = {"name": "nb201_small", "family": "nb201", "ops": ["none", "skip_connect", "avg_pool_3x3",
               "nor_conv_1x1", "nor_conv_3x3"], "channels": 4, "cells_per_stage": 1, "resolution": 16}
SPACE = space_from_dict(SMALL_NB201)
REFERENCE = SearchConfig.estimator_reference  # the search's default reference population


@pytest.mark.parametrize("settings, message", [
    ({"objectives": ("estimate", "flops")}, "the estimate objective needs an estimator expression"),
    ({"estimator": "naswot"}, "estimator 'naswot' scores the estimate objective"),
    ({"objectives": ("estimate", "bn_score"), "estimator": "naswot"}, "pick one of bn_score"),
    ({"objectives": ("estimate", "flops"), "estimator": "naswot,flops"}, "takes one estimator expression"),
    ({"objectives": ("estimate", "flops"), "estimator": "fuse:naswot+"}, "malformed term"),
    ({"objectives": ("estimate", "flops"), "estimator": "magic"}, "unknown estimator 'magic'"),
    ({"objectives": ("estimate", "flops"), "estimator": "naswot", "estimator_reference": 1}, "must be >= 2"),
])
def test_search_config_checks_its_estimator(settings, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**settings)


def test_the_expression_and_its_reference_are_the_run_identity():
    subject = UntrainedSupernet(ModelRecord.of(SPACE, DataInfo("", 10, 3, 32, (0.5,), (0.5,))))
    ids = {text: search_identity(SearchConfig(objectives=("estimate", "flops"), estimator=text), subject, PoolConfig())
           for text in ("fuse:naswot+flops", "naswot")}
    assert ids["fuse:naswot+flops"].estimator_reference == REFERENCE and ids["naswot"].estimator_reference is None
    assert ids["naswot"].differences(ids["fuse:naswot+flops"].to_dict()) == {
        "estimator": ("fuse:naswot+flops", "naswot")}
    bn = search_identity(SearchConfig(), subject, PoolConfig())
    assert "estimator" not in bn.to_dict()  # unset later fields leave older identities' hashes alone


def run_search(space_file, out, evaluator, *flags):
    return main(["search", str(space_file), "--evaluator", evaluator, "--data", "synthetic", "--probe-images", "8",
                 "--trials", "6", "--search-batch", "3", "--sampler", "random", "--actor-cpus", "0.5",
                 "--out", str(out), *flags])


def parts(folder):
    return sorted(p.name for p in folder.rglob("part-*.parquet"))


def test_a_fused_search_over_a_space_scores_as_raynas_score_and_resumes(ray_local, tmp_path, capsys):
    space_file = tmp_path / "nb201_small.yaml"
    space_file.write_text(yaml.safe_dump(SMALL_NB201))
    out = tmp_path / "search"
    assert run_search(space_file, out, "fuse:naswot+flops") == 0
    rows = pd.read_parquet(out / "results").sort_values("trial")
    assert rows["trial"].tolist() == list(range(6)) and set(rows["evaluator"]) == {"estimate"}
    ok = rows[rows["status"] == "ok"]
    assert len(ok) and ok["estimate"].notna().all() and (ok["checkpoint_id"] == "nb201_small@init-0").all()
    assert json.loads((out / "run.json").read_text())["search"]["estimator"] == "fuse:naswot+flops"

    # the same reference (64 children sampled by the search seed) and the searched children, scored by `raynas score`
    reference = [SPACE.key(a) for a in SPACE.from_index_matrix(SPACE.sample_index_matrix(REFERENCE, seed=0))]
    keys = tmp_path / "archs.txt"
    keys.write_text("\n".join(reference + ok["arch"].tolist()))
    assert main(["score", str(space_file), "--estimator", "naswot,flops", "--archs", str(keys), "--seed", "0",
                 "--data", "synthetic", "--probe-images", "8", "--out", str(tmp_path / "score")]) == 0
    scores = pd.read_parquet(tmp_path / "score" / "scores.parquet")
    columns = {n: scores[n].to_numpy(np.float64) for n in ("naswot", "flops")}
    fusion = LogRankFusion({"naswot": 1.0, "flops": 1.0}).fit({n: c[:REFERENCE] for n, c in columns.items()})
    expected = fusion.score({n: c[REFERENCE:] for n, c in columns.items()})
    np.testing.assert_allclose(ok["estimate"].to_numpy(), expected, rtol=1e-12)

    assert main(["report", str(out)]) == 0
    assert json.loads((out / "report" / "summary.json").read_text())["objectives"] == ["estimate", "flops"]

    before = parts(out)
    assert run_search(space_file, out, "fuse:naswot+flops") == 0  # finished: nothing is scored again
    assert parts(out) == before
    capsys.readouterr()
    assert run_search(space_file, out, "naswot") == 2
    err = capsys.readouterr().err.strip()
    assert "estimator='fuse:naswot+flops'" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("evaluator, message", [("magic", "unknown estimator 'magic'"),
                                                ("fuse:naswot+", "malformed term")])
def test_a_bad_expression_is_one_line(tmp_path, capsys, evaluator, message):
    assert run_search("tiny", tmp_path / "s", evaluator) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_search_over_a_space_defaults_to_the_familys_measured_estimator(tmp_path):
    from raynas.cli.main import build_parser
    from raynas.cli.search_cmd import search_config
    from raynas.search.recipes import default_estimator
    from raynas.space import load_space

    parser = build_parser()
    on_space = search_config(parser.parse_args(["search", "nb201", "--out", str(tmp_path)]))
    assert on_space.estimator == default_estimator(load_space("nb201")) and on_space.objectives[0] == "estimate"
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    on_checkpoint = search_config(parser.parse_args(["search", str(checkpoint), "--out", str(tmp_path)]))
    assert on_checkpoint.estimator is None and on_checkpoint.accuracy_evaluator == "calibrate"
