"""Cost targets, the shortlist rules over them and the funnel record (pure: no Ray, no torch training)."""

import pandas as pd
import pytest

from raynas.errors import ConfigError
from raynas.protocol.main_job import parse_targets
from raynas.protocol.funnel import Funnel, asha_rungs
from raynas.protocol.targets import budget_shortlist, check_targets, cost_quantile_targets, spread_shortlist
from raynas.protocol.tune_training import EarlyStopping
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


def test_budget_candidates_reach_up_to_the_budget_where_the_band_rule_stays_cheap():
    # the score prefers cheap children (as the BN indicator does on tiny); costs 1..40
    rows = pd.DataFrame({"arch": [f"a{i}" for i in range(1, 41)], "flops": list(range(1, 41)),
                         "bn_score": [1.0 - i / 100 for i in range(1, 41)]})
    budget = budget_shortlist(rows, [20, 40], "flops", per_target=4)
    band = spread_shortlist(rows, [20, 40], "flops", per_target=4)
    costs = {t: [int(a[1:]) for a in archs] for t, archs in budget.items()}
    assert all(len(archs) == 4 and max(costs[t]) <= t for t, archs in budget.items())
    assert min(costs[40]) > 20  # the larger budget's candidates are not its cheap end
    assert sorted(int(a[1:]) for a in band[20]) == [1, 2, 3, 4]  # the band rule's cheapest-first shortlist
    assert sum(costs[20]) > sum(int(a[1:]) for a in band[20])
    everything = [a for archs in budget.values() for a in archs]
    assert len(everything) == len(set(everything))


def test_budget_candidates_may_come_from_below_the_previous_budget():
    rows = pd.DataFrame({"arch": ["a", "b", "c"], "flops": [1, 2, 10], "bn_score": [0.5, 0.4, 0.1]})
    assert budget_shortlist(rows, [2, 9], "flops", per_target=1) == {2: ["a"], 9: ["b"]}  # a tie keeps search order
    assert budget_shortlist(rows, [1, 1.5], "flops", per_target=2) == {1: ["a"], 1.5: []}
    with pytest.raises(ConfigError, match="shortlist size per target must be >= 1, got 0"):
        budget_shortlist(rows, [2], "flops", per_target=0)


def test_asha_rungs_and_the_funnel_record():
    assert asha_rungs(EarlyStopping(2, 3), 6) == [2, 6]
    assert asha_rungs(EarlyStopping(1, 2), 8) == [1, 2, 4, 8]
    assert asha_rungs(EarlyStopping(2, 3), 2) == [2] and asha_rungs(EarlyStopping(2, 3), 1) == [1]
    short = pd.DataFrame({"arch": ["a", "b", "c", "d"], "epochs": [2, 6, 2, 6]})
    funnel = Funnel.of("budget", "bn_score+flops", 100, [2, 6], 30, {5.0: ["a", "b"], 9.0: ["c", "d"]}, short,
                       {5.0: "b", 9.0: "d"})
    assert [t.reached for t in funnel.targets] == [{2: 2, 6: 1}, {2: 2, 6: 1}]
    assert funnel.how(9.0) == ("2 of 100 searched, under the budget by bn_score+flops; ASHA 2->1 at 2/6 epochs; "
                               "retrained 30 epochs")
    assert funnel.to_dict()["targets"][0] == {"target": 5.0, "candidates": ["a", "b"], "reached": {"2": 2, "6": 1},
                                              "winner": "b"}
