"""Cost targets and the shortlist spread over them (pure: no Ray, no torch training)."""

import pandas as pd
import pytest

from raynas.errors import ConfigError
from raynas.protocol.main_job import parse_targets
from raynas.protocol.targets import check_targets, cost_quantile_targets, spread_shortlist
from raynas.search.costs import CheapObjectives
from raynas.search.objectives import Constraint
from raynas.space import load_space


@pytest.fixture(scope="module")
def cheap():
    return CheapObjectives(load_space("tiny"), num_classes=10, in_channels=1)


def test_quantile_targets_are_increasing_and_end_at_the_largest_child(cheap):
    targets = cost_quantile_targets(cheap, 3, "flops", seed=0)
    largest = float(cheap([cheap.space.max()])["flops"][0])
    assert len(targets) == 3 and targets == sorted(targets) and targets[-1] == largest
    assert cost_quantile_targets(cheap, 3, "flops", seed=0) == targets


def test_targets_below_the_smallest_child_are_refused(cheap):
    with pytest.raises(ConfigError, match=r"cannot be met: the smallest child of tiny has flops="):
        check_targets(cheap, [1.0, 1e9], "flops")
    with pytest.raises(ConfigError, match=r"a cost target applies to one of \['flops', 'params', 'latency_ms'\]"):
        check_targets(cheap, [1e9], "bn_score")
    with pytest.raises(ConfigError, match="number of targets must be >= 1, got 0"):
        cost_quantile_targets(cheap, 0)


def test_parse_targets_count_budgets_and_constraint():
    assert parse_targets("4", (), "flops") == 4
    assert parse_targets("2e4,5e4", (), "flops") == [2e4, 5e4]
    assert parse_targets(None, (Constraint.parse("flops<=3e4"),), "flops") == [3e4]
    assert parse_targets(None, (), "flops") == 3
    with pytest.raises(ConfigError, match=r"--targets must be a count such as 3 or budgets such as 2e4,5e4, got 'x'"):
        parse_targets("x", (), "flops")


def test_shortlist_takes_the_best_scored_of_each_band_once():
    rows = pd.DataFrame({"arch": list("abcdefgh"), "flops": [1, 2, 3, 4, 5, 6, 7, 8],
                         "bn_score": [0.1, 0.9, 0.5, 0.2, 0.8, 0.3, 0.7, 0.95]})
    shortlist = spread_shortlist(rows, [3, 6, 8], "flops", per_target=2)
    assert shortlist == {3: ["b", "c"], 6: ["e", "f"], 8: ["h", "g"]}
    everything = [a for archs in shortlist.values() for a in archs]
    assert len(everything) == len(set(everything))


def test_a_thin_band_is_filled_with_cheaper_children():
    rows = pd.DataFrame({"arch": ["a", "b", "c"], "flops": [1, 2, 10], "bn_score": [0.5, 0.4, 0.1]})
    assert spread_shortlist(rows, [2, 9], "flops", per_target=2) == {2: ["a", "b"], 9: []}
    assert spread_shortlist(rows, [1, 9], "flops", per_target=2) == {1: ["a"], 9: ["b"]}
    with pytest.raises(ConfigError, match="shortlist size per target must be >= 1, got 0"):
        spread_shortlist(rows, [2], "flops", per_target=0)
