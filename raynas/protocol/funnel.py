"""The record of how the BN-NAS path chose each model: prescreen, candidates, rungs, winner.

``final.json`` keeps it whole (``selection``), the final table prints one line per model from
it, and ``report/final.png`` draws it over the cost axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from raynas.protocol.tune_training import EarlyStopping


def asha_rungs(early_stopping: EarlyStopping, max_epochs: int) -> list[int]:
    """The epochs at which ASHA compares candidates: grace * eta^k below ``max_epochs``, then ``max_epochs``."""
    rungs, epoch = [], early_stopping.grace_epochs
    while epoch < max_epochs:
        rungs.append(epoch)
        epoch *= early_stopping.reduction_factor
    return rungs + [max_epochs]


@dataclass(frozen=True)
class TargetFunnel:
    """One cost target: its candidates, how many reached each rung, and the one retrained in full."""

    target: float
    candidates: list[str]
    reached: dict[int, int]  # rung epoch -> candidates trained at least that long
    winner: str


@dataclass(frozen=True)
class Funnel:
    """The whole selection of a BN-NAS main job."""

    rule: str  # the shortlist rule: "budget" or "band"
    ranked_by: str  # what the shortlist ranked the searched children by, e.g. "bn_score+flops"
    prescreened: int  # searched children with a score
    rungs: list[int]
    final_epochs: int
    targets: list[TargetFunnel]

    @classmethod
    def of(cls, rule: str, ranked_by: str, prescreened: int, rungs: list[int], final_epochs: int,
           shortlist: Mapping[float, Sequence[str]], short_rows: pd.DataFrame, winners: Mapping[float, str]) -> Funnel:
        """Read how far each candidate got from the short-training rows (``epochs`` per arch)."""
        epochs = dict(zip(short_rows["arch"], short_rows["epochs"].astype(int)))
        targets = [TargetFunnel(float(t), list(archs), {r: sum(epochs.get(a, 0) >= r for a in archs) for r in rungs},
                                winners[t]) for t, archs in sorted(shortlist.items())]
        return cls(rule, ranked_by, prescreened, rungs, final_epochs, targets)

    def how(self, target: float) -> str:
        """One line for the final table, e.g. ``9 of 900 searched, under the budget by bn_score+flops;
        ASHA 9->5 at 2/6 epochs; retrained 30 epochs``."""
        funnel = next(f for f in self.targets if f.target == float(target))
        where = "under the budget" if self.rule == "budget" else "in the cost band"
        counts = "->".join(str(funnel.reached[r]) for r in self.rungs)
        return (f"{len(funnel.candidates)} of {self.prescreened} searched, {where} by {self.ranked_by}; "
                f"ASHA {counts} at {'/'.join(map(str, self.rungs))} epochs; retrained {self.final_epochs} epochs")

    def to_dict(self) -> dict[str, object]:
        record = asdict(self)
        record["targets"] = [{**t, "reached": {str(k): v for k, v in t["reached"].items()}}  # JSON keys are strings
                             for t in record["targets"]]
        return record
