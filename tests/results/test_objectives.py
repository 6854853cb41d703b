"""One objective vocabulary: the search, the Tune adapter, the prescreen and the reports read one record."""

import numpy as np
import pytest

from raynas.errors import ConfigError, ResultsError
from raynas.results import pareto
from raynas.results.fronts import pareto_layers
from raynas.results.objectives import CHEAP, OBJECTIVES, check_objectives, directions_of, objective
from raynas.search import objectives as search_objectives
from raynas.search.study import SearchConfig, pareto_ranks


def test_every_layer_reads_the_same_record():
    assert search_objectives.OBJECTIVES is OBJECTIVES and search_objectives.CHEAP == CHEAP == (
        "flops", "params", "latency_ms")
    assert pareto.OBJECTIVE_DIRECTIONS == {name: o.direction for name, o in OBJECTIVES.items()}
    for name, o in OBJECTIVES.items():
        assert (o.direction, o.optuna_direction, o.sign) in {("max", "maximize", -1.0), ("min", "minimize", 1.0)}
    assert directions_of(["accuracy", "flops"]) == ["max", "min"] and objective("latency_ms").unit == "ms"


def test_the_parquet_schema_has_one_column_per_objective_typed_from_its_record():
    import pyarrow as pa

    from raynas.results.schema import result_schema
    from raynas.space import load_space

    schema = result_schema(load_space("tiny"))
    for name, o in OBJECTIVES.items():
        assert schema.field(name).type == (pa.int64() if o.integral else pa.float64()), name
    assert [name for name, o in OBJECTIVES.items() if o.integral] == ["flops", "params"]


def test_unknown_or_repeated_names_are_refused_with_the_valid_ones():
    with pytest.raises(ResultsError, match="unknown objective 'macs'; valid objectives: bn_score, accuracy"):
        check_objectives(["macs"])
    with pytest.raises(ResultsError, match="each objective may appear once"):
        check_objectives(["flops", "flops"])
    with pytest.raises(ConfigError, match=r"unknown objective\(s\) \['loss'\]"):  # a report column, not a goal
        SearchConfig(objectives=("loss", "flops"))


def test_one_non_dominated_sorting_behind_reports_search_and_prescreen():
    rng = np.random.default_rng(0)
    values = np.round(rng.random((300, 3)), 1)  # many ties and duplicates
    directions = ["max", "min", "min"]
    ranks = pareto_ranks(values, directions)
    assert (pareto.pareto_mask(values, directions) == (ranks == 0)).all()
    assert (ranks == pareto_layers(values * [-1, 1, 1], keep=len(values))).all() and (ranks >= 0).all()
    for rank in range(1, ranks.max() + 1):  # each front is the front of what the earlier ones left
        rest = ranks >= rank
        assert (pareto.pareto_mask(values[rest], directions) == (ranks[rest] == rank)).all()
