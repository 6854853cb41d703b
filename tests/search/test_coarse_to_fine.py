"""BigNAS coarse-to-fine selection: a calibrated grid, then seeded perturbations per cost target."""

import random

import pytest

from raynas.data import load_data
from raynas.errors import ConfigError
from raynas.estimate.calibration import CalibrationConfig
from raynas.results import ResultStore
from raynas.search import EvaluatorPool, PoolConfig
from raynas.protocol.targets import cost_quantile_targets
from raynas.search.coarse_to_fine import coarse_grid, coarse_to_fine, perturb
from raynas.search.costs import CheapObjectives
from raynas.space import load_space
from raynas.supernet.mobilenet import with_stage_skip
from raynas.train import load_checkpoint, train_supernet
from raynas.train.config import bignas_recipe

TIME_FIELDS = ("started_at", "finished_at", "eval_seconds")


class Recording:
    """Passes batches to a pool and remembers every child it was asked to evaluate."""

    def __init__(self, pool, space):
        self.pool, self.space, self.keys = pool, space, []

    def calibrate_and_evaluate(self, archs):
        self.keys += [self.space.key(a) for a in archs]
        return self.pool.calibrate_and_evaluate(archs)


@pytest.fixture(scope="module")
def space():
    return with_stage_skip(load_space("tiny"))


@pytest.fixture(scope="module")
def costs(space):
    return CheapObjectives(space, num_classes=4, in_channels=3)


@pytest.fixture(scope="module")
def pool(ray_local, tmp_path_factory, space):
    """A BigNAS (full-mode, stage-skip) tiny supernet trained for one short epoch on synthetic data.

    Synthetic data has 30 calibration images, so every child is calibrated on all 30.
    """
    data = load_data("synthetic")
    config = bignas_recipe(1, train_images=256, log_every_epoch=False)
    result = train_supernet(space, data, config, out_dir=tmp_path_factory.mktemp("c2f"), name="c2f")
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint.space.spec.stage_skip and checkpoint.config.bn_layout == "shared"
    with EvaluatorPool(checkpoint, data, PoolConfig(num_actors=1, num_cpus=0.5,
                                                    calibration=CalibrationConfig(images=64))) as p:
        yield p


@pytest.fixture(scope="module")
def selection(pool, space, costs):
    targets = cost_quantile_targets(costs, 3)
    recording = Recording(pool, space)
    result = coarse_to_fine(space, recording, costs, targets, perturbations=6, seed=0,
                            checkpoint_id=pool.checkpoint.checkpoint_id)
    return targets, result, recording.keys


def test_grid_covers_every_resolution_with_one_level_per_stage(space):
    grid = coarse_grid(space)
    assert len(grid) == 32  # 2 resolutions x stem x 2 stages x head, two distinct levels each
    assert {a["resolution"] for a in grid} == set(space.spec.resolutions)
    assert space.min() in grid and space.max() in grid
    for arch in grid:
        for i, stage in enumerate(space.spec.stages):
            level = stage.depth.index(arch[f"s{i}_depth"])
            assert stage.width.index(arch[f"s{i}_width"]) == level
            assert {arch[f"s{i}_b{j}_kernel"] for j in range(arch[f"s{i}_depth"])} == {stage.kernel[level]}
    assert len(coarse_grid(space, levels=("min",))) == 2
    with pytest.raises(ConfigError, match=r"unknown grid level 'huge'; valid levels: \['min', 'mid', 'max'\]"):
        coarse_grid(space, levels=("min", "huge"))
    with pytest.raises(ConfigError, match="family mobilenet.*'nb201'"):
        coarse_grid(load_space("nb201"))


def test_perturbations_move_a_few_dimensions_by_one_choice(space):
    rng = random.Random(0)
    center = coarse_grid(space)[5]
    for _ in range(50):
        child = perturb(space, center, rng, max_changes=2)
        moved = [d for d in space.dims if d.name in center and d.name in child and center[d.name] != child[d.name]]
        assert all(abs(d.index(center[d.name]) - d.index(child[d.name])) == 1 for d in moved)
        assert 1 <= len(moved) <= 2 and child != center
        assert space.arch(space.key(child)) == child


def test_winners_are_the_best_evaluated_children_within_budget(selection, space):
    targets, result, _ = selection
    assert [w.target for w in result.winners] == targets
    ok = [r for r in result.rows if r["status"] == "ok"]
    for winner in result.winners:
        assert winner.cost <= winner.target and winner.stage in ("grid", "perturb")
        within = [r["accuracy"] for r in ok if r["flops"] <= winner.target]
        assert winner.accuracy == max(within)
    assert {r["sampler"] for r in result.rows} == {"coarse_to_fine:grid", "coarse_to_fine:perturb"}
    grid_rows = [r for r in result.rows if r["sampler"] == "coarse_to_fine:grid"]
    assert len(grid_rows) == result.grid_size and {space.arch(r["arch"])["resolution"] for r in grid_rows} == {12, 16}
    assert all(r["flops"] > max(targets) for r in result.rows if r["status"] == "infeasible")
    assert all(r["split"] == "val" and r["calib_images"] == 30 and 0 <= r["accuracy"] <= 1 for r in ok)
    assert all(r["flops"] <= max(targets) for r in result.rows if r["sampler"].endswith("perturb"))


def test_no_child_is_evaluated_twice_and_rows_write_to_parquet(selection, space, tmp_path):
    _, result, asked = selection
    assert len(asked) == len(set(asked)) == result.evaluated
    assert len({r["arch"] for r in result.rows}) == len(result.rows)
    assert [r["trial"] for r in result.rows] == list(range(len(result.rows)))
    store = ResultStore(tmp_path / "results", space)
    store.write_batch(list(result.rows))
    table = store.read()
    assert table.num_rows == len(result.rows) and set(table.column("evaluator").to_pylist()) == {"calibrate"}


def test_a_seeded_run_repeats_exactly(selection, pool, space, costs):
    targets, first, _ = selection
    again = coarse_to_fine(space, pool, costs, targets, perturbations=6, seed=0,
                           checkpoint_id=pool.checkpoint.checkpoint_id)
    assert again.winners == first.winners
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows]  # noqa: E731
    assert strip(again.rows) == strip(first.rows)


def test_the_seed_picks_the_perturbations(space, costs, pool):
    targets = cost_quantile_targets(costs, 2)
    runs = [coarse_to_fine(space, pool, costs, targets, perturbations=6, seed=s) for s in (0, 0, 1)]
    keys = [[r["arch"] for r in run.rows if r["sampler"].endswith("perturb")] for run in runs]
    assert keys[0] == keys[1] != keys[2]


def test_bad_costs_and_impossible_targets_raise_config_error(space, costs, pool):
    fake = pool  # every check fails before the pool is asked for anything
    smallest = float(costs([space.min()])["flops"][0])
    with pytest.raises(ConfigError, match=rf"no child meets flops <= 10: the smallest child costs {smallest:g} flops"):
        coarse_to_fine(space, fake, costs, [10, 2 * smallest])
    with pytest.raises(ConfigError, match=r"unknown cost 'macs'; valid costs: \['flops', 'params', 'latency_ms'\]"):
        coarse_to_fine(space, fake, costs, [1e9], cost_name="macs")
    with pytest.raises(ConfigError, match="cost 'latency_ms' is not computed here .*latency table"):
        coarse_to_fine(space, fake, costs, [1.0], cost_name="latency_ms")
    with pytest.raises(ConfigError, match="coarse grid has 32 children, more than max_grid=10"):
        coarse_to_fine(space, fake, costs, [1e9], max_grid=10)
    with pytest.raises(ConfigError, match="non-empty list of finite flops budgets"):
        coarse_to_fine(space, fake, costs, [])
