"""Search: evaluator actors over shared supernet weights, Optuna ask/tell, the Ray Tune adapter."""

from raynas.search.evaluator import Evaluator, EvaluatorActor
from raynas.search.pool import EvaluatorPool, PoolConfig

__all__ = ["Evaluator", "EvaluatorActor", "EvaluatorPool", "PoolConfig"]
