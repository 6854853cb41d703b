"""Each training-free estimator equals its paper's formula computed directly on a tiny network, and
scores are the same across processes, actors and reruns with the same seed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raynas.cli import main
from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.estimate.training_free import Minibatch, ProbeBatch, ScoringContext, estimator, known_estimators, score_children
from raynas.estimate.training_free.fusion import LogRankFusion, MajorityVote, parse_expression, parse_expressions
from raynas.model_record import DataInfo, ModelRecord
from raynas.search.pool import EvaluatorPool, PoolConfig, UntrainedSupernet
from raynas.space import load_space, space_from_dict

NETWORK_ESTIMATORS = ["naswot", "jacov", "synflow", "snip", "grad_norm", "zico"]


def tiny_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 32, bias=False), nn.ReLU(), nn.Linear(32, 3, bias=False))


def tiny_batch(n: int = 6) -> Minibatch:
    gen = torch.Generator().manual_seed(1)
    return Minibatch(torch.randn(n, 5, generator=gen), torch.randint(0, 3, (n,), generator=gen), 3)


def score(name: str, net: nn.Module, batch: Minibatch) -> float:
    return estimator(name).score(net, batch)


def loss_grads(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dW1 and dL/dW2 of the cross-entropy, written out by hand (no autograd)."""
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    pre = x @ w1.T
    hidden = pre.clamp_min(0)
    delta = (F.softmax(hidden @ w2.T, dim=1) - F.one_hot(y, 3).float()) / len(x)
    g2 = delta.T @ hidden
    g1 = ((delta @ w2) * (pre > 0).float()).T @ x
    return g1, g2


def test_every_shipped_estimator_is_registered_with_its_paper():
    assert set(NETWORK_ESTIMATORS + ["params", "flops", "bn_score"]) <= set(known_estimators())
    assert all(estimator(n).paper for n in known_estimators())


def test_naswot_is_the_log_determinant_of_the_hamming_kernel():
    net, batch = tiny_net(), tiny_batch()
    codes = (batch.inputs @ net[0].weight.detach().T > 0).double()  # the ReLU's input decides each unit
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    kernel = codes.shape[1] - hamming
    assert score("naswot", net, batch) == pytest.approx(math.log(abs(np.linalg.det(kernel.numpy()))))


def test_jacov_scores_the_eigenvalues_of_the_jacobian_correlation():
    net, batch = tiny_net(), tiny_batch()
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    active = (batch.inputs @ w1.T > 0).float()
    jacobians = (active * w2.sum(0)) @ w1  # d(sum of logits)/dx_i = W1^T diag(on_i) W2^T 1
    eigenvalues = np.clip(np.linalg.eigvalsh(np.corrcoef(jacobians.double().numpy())), 0, None)
    expected = -np.sum(np.log(eigenvalues + 1e-5) + 1 / (eigenvalues + 1e-5))
    assert score("jacov", net, batch) == pytest.approx(expected)


def test_snip_and_grad_norm_follow_the_loss_gradient():
    net, batch = tiny_net(), tiny_batch()
    g1, g2 = loss_grads(net, batch.inputs, batch.labels)
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    assert score("snip", net, batch) == pytest.approx(float((w1 * g1).abs().sum() + (w2 * g2).abs().sum()), rel=1e-5)
    assert score("grad_norm", tiny_net(), batch) == pytest.approx(float(g1.norm() + g2.norm()), rel=1e-5)


def test_synflow_of_a_linear_network_is_its_depth_times_the_path_sum():
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 3, bias=False))
    batch = tiny_batch()
    w1, w2 = net[0].weight.detach().abs().double(), net[2].weight.detach().abs().double()
    path_sum = float(torch.ones(3, dtype=torch.float64) @ w2 @ w1 @ torch.ones(5, dtype=torch.float64))
    assert score("synflow", net, batch) == pytest.approx(2 * path_sum)  # BN removed, every weight's |theta * grad|
    assert (net[0].weight.detach() < 0).any()  # the caller's network keeps its signs


def test_zico_is_the_log_of_mean_over_std_of_the_split_gradients():
    net, batch = tiny_net(), tiny_batch()
    halves = [loss_grads(net, x, y) for x, y in zip(batch.inputs.chunk(2), batch.labels.chunk(2))]
    expected = 0.0
    for layer in range(2):
        grads = torch.stack([h[layer].flatten() for h in halves]).double()
        std, mean_abs = grads.std(0, unbiased=False), grads.abs().mean(0)
        expected += math.log(float((mean_abs[std > 0] / std[std > 0]).sum()))
    assert score("zico", net, batch) == pytest.approx(expected, rel=1e-5)


def test_log_rank_fusion_is_the_sum_of_log_ranks_and_places_new_children():
    columns = {"a": np.array([3.0, 1.0, 2.0, 2.0]), "b": np.array([10.0, 40.0, 30.0, 20.0])}
    fused = LogRankFusion({"a": 2.0, "b": 1.0}).fit(columns)
    ranks_a, ranks_b = np.array([4, 1, 2.5, 2.5]), np.array([1, 4, 3, 2])
    assert fused.score(columns) == pytest.approx(2 * np.log(ranks_a / 4) + np.log(ranks_b / 4))
    alone = fused.score({"a": np.array([3.0]), "b": np.array([40.0])})  # scored alone, placed in the population
    assert alone == pytest.approx([0.0])


def test_majority_vote_counts_the_children_a_majority_prefers():
    columns = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([1.0, 3.0, 2.0]), "c": np.array([3.0, 2.0, 1.0])}
    votes = MajorityVote(["a", "b", "c"]).fit(columns).score(columns)
    assert votes == pytest.approx([0.0, 2 / 3, 1 / 3])  # child 1 beats 0 and 2; child 2 beats 0


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown estimator 'nope'"), ("fuse:naswot", "two or more distinct members"),
    ("fuse:naswot**2+flops", "malformed term"), ("mix:naswot+flops", "unknown prefix 'mix'"),
    ("vote:naswot*2+flops+snip", "takes no weights"), ("fuse:naswot+naswot", "two or more distinct"),
    ("ranker:", "needs a file"),
])
def test_malformed_expressions_are_refused_by_name(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_expression(text)
    with pytest.raises(ConfigError, match="twice"):
        parse_expressions("naswot,naswot")


SMALL_NB201 = {"name": "nb201_small", "family": "nb201", "ops": ["none", "skip_connect", "avg_pool_3x3",
               "nor_conv_1x1", "nor_conv_3x3"], "channels": 4, "cells_per_stage": 1, "resolution": 16}


@pytest.fixture(scope="module")
def small():
    space = space_from_dict(SMALL_NB201)
    data = load_data("synthetic")
    source = UntrainedSupernet(ModelRecord.of(space, DataInfo.of(data)), seed=3)
    archs = space.from_index_matrix(space.sample_index_matrix(6, seed=0))
    return source, ProbeBatch.from_splits(data, 16, seed=0), archs


def test_scores_are_identical_across_actors_and_reruns(ray_local, small):
    source, probe, archs = small
    names = NETWORK_ESTIMATORS + ["params", "bn_score"]
    with EvaluatorPool(source, None, PoolConfig(num_actors=2, spread=False), probe=probe) as pool:
        first = pd.DataFrame(pool.estimate(archs, names, batch_size=1))
        again = pd.DataFrame(pool.estimate(archs[::-1], names, batch_size=3)).iloc[::-1].reset_index(drop=True)
    assert first["arch"].tolist() == [source.space.key(a) for a in archs]
    for name in names:
        assert first[name].tolist() == again[name].tolist(), name
    local = score_children(ScoringContext(source.supernet, probe), archs, names)  # another process, same seed
    for name in names:
        assert local.values[name].tolist() == first[name].tolist(), name
    assert np.isfinite(first[[f"{n}_cpu_s" for n in names]].to_numpy()).all()


def test_a_score_does_not_depend_on_the_estimators_asked_with_it(small):
    source, probe, archs = small
    context = ScoringContext(source.supernet, probe)
    together = score_children(context, archs[:3], NETWORK_ESTIMATORS)
    for name in NETWORK_ESTIMATORS:
        assert score_children(context, archs[:3], [name]).values[name].tolist() == together.values[name].tolist()


def test_score_command_writes_resumes_and_refuses_bad_input(ray_local, tmp_path, capsys):
    keys = tmp_path / "cells.csv"
    space = load_space("nb201")
    pd.DataFrame({"arch": [space.key(a) for a in space.from_index_matrix(space.sample_index_matrix(3, seed=1))]}
                 ).to_csv(keys, index=False)
    argv = ["score", "nb201", "--estimator", "naswot,flops,fuse:naswot+flops", "--archs", str(keys),
            "--data", "synthetic", "--probe-images", "8", "--out", str(tmp_path / "s")]
    assert main(argv) == 0
    table = pd.read_parquet(tmp_path / "s" / "scores.parquet")
    assert list(table["arch"]) == list(pd.read_csv(keys)["arch"])
    assert {"naswot", "flops", "fuse:naswot+flops", "naswot_cpu_s", "network_cpu_s", "edge_0_1"} <= set(table.columns)
    parts = sorted((tmp_path / "s" / "parts").glob("part-*.parquet"))
    assert main(argv) == 0  # a rerun scores nothing again
    assert sorted((tmp_path / "s" / "parts").glob("part-*.parquet")) == parts
    assert pd.read_parquet(tmp_path / "s" / "scores.parquet")["naswot"].tolist() == table["naswot"].tolist()
    capsys.readouterr()
    bad = [(["--estimator", "fuse:naswot+"], "malformed term"), (["--estimator", "magic"], "unknown estimator"),
           (["--probe-images", "8", "--seed", "5"], "other settings (probe, seed, source)")]
    for flags, message in bad:
        assert main([*argv, *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted((tmp_path / "s" / "parts").glob("part-*.parquet")) == parts  # nothing scored was lost
    assert pd.read_parquet(tmp_path / "s" / "scores.parquet")["naswot"].tolist() == table["naswot"].tolist()


def test_score_command_applies_a_learned_ranker_and_refuses_one_of_another_space(tmp_path, capsys):
    from raynas.cost import CostModel
    from raynas.estimate.training_free.ranker import LearnedRanker

    space = load_space("nb201")
    archs = space.from_index_matrix(space.sample_index_matrix(60, seed=2))
    flops = CostModel(space).costs(archs)["flops"].astype(float)
    truth = flops + np.random.default_rng(0).normal(0, flops.std(), len(flops))
    LearnedRanker(["flops"]).fit(space, archs, {"flops": flops}, truth).save(tmp_path / "ranker.json")
    keys = tmp_path / "cells.txt"
    keys.write_text("\n".join(space.key(a) for a in archs[:7]))
    argv = ["score", "nb201", "--archs", str(keys), "--out", str(tmp_path / "s.parquet")]
    assert main([*argv, "--estimator", f"flops,ranker:{tmp_path / 'ranker.json'}"]) == 0
    table = pd.read_parquet(tmp_path / "s.parquet")
    loaded = LearnedRanker.load(tmp_path / "ranker.json", space)
    expected = loaded.predict(space, archs[:7], {"flops": flops[:7]})
    assert table[f"ranker:{tmp_path / 'ranker.json'}"].tolist() == pytest.approx(list(expected))
    tiny = load_space("tiny")
    tiny_archs = tiny.from_index_matrix(tiny.sample_index_matrix(30, seed=0))
    tiny_flops = CostModel(tiny).costs(tiny_archs)["flops"].astype(float)
    LearnedRanker(["flops"]).fit(tiny, tiny_archs, {"flops": tiny_flops}, tiny_flops).save(tmp_path / "tiny.json")
    capsys.readouterr()
    assert main([*argv, "--estimator", f"ranker:{tmp_path / 'tiny.json'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tiny" in err and len(err.splitlines()) == 1, err
