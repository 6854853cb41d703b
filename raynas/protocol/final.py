"""The last stage of both protocols: test top-1, read once per final model, then export.

The test split reaches this stage only: training workers and evaluator actors are sent the
train, calibration and validation splits (``pack_splits``, ``pack_eval_data``), never the test.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from raynas.data import DataSplits, ImageSet, to_model_input
from raynas.atomic import write_atomic
from raynas.errors import ConfigError

EVAL_BATCH = 512


@dataclass
class FinalModel:
    """A model ready to ship: chosen for ``target``, trained or calibrated, not yet tested."""

    target: float
    arch: str
    val_accuracy: float
    seconds: float
    child: nn.Module
    how: str  # "retrained N epochs" or "calibrated from the supernet"


class LedgerEntry(TypedDict):
    """One read of the test split: which model, and its top-1 once the read finished."""

    model: str
    accuracy: float | None


@dataclass
class TestSplit:
    """The test images, handed out once per final model and counted, so a report can prove it.

    With a ``ledger`` (a JSON file in the run folder) the count survives crashes: a read is
    recorded before it happens and its accuracy after, and a model whose accuracy is recorded
    is never measured again. So ``reads`` counts every read over all attempts of a run, and a
    crash cannot be used to draw the test figure twice unnoticed.
    """

    __test__ = False  # a name pytest would otherwise try to collect

    data: DataSplits
    ledger: Path | None = None
    reads: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._this_attempt: set[str] = set()
        if self.ledger is not None and self.ledger.is_file():
            try:
                self._entries = json.loads(self.ledger.read_text())["reads"]
            except (ValueError, KeyError, TypeError) as error:
                raise ConfigError(f"{self.ledger} is not a test-read ledger raynas wrote ({error}); it counts "
                                  "the reads of the test split, so it is not replaced: move it away to go on") from None
        self.reads = [e["model"] for e in self._entries]

    def top1(self, child: nn.Module, arch_key: str, resolution: int) -> float:
        """Top-1 of ``child`` on the test split. A second request for one model in one attempt is
        refused; a model an earlier attempt measured gets its recorded figure, with no new read."""
        if arch_key in self._this_attempt:
            raise ConfigError(f"the test split was already read for {arch_key}: it is used once per final model")
        self._this_attempt.add(arch_key)
        recorded = [e["accuracy"] for e in self._entries if e["model"] == arch_key]
        if recorded and recorded[-1] is not None:
            return recorded[-1]
        entry: LedgerEntry = {"model": arch_key, "accuracy": None}
        self._entries.append(entry)
        self.reads.append(arch_key)
        self._save()
        accuracy = top1(child, self.data.test, self.data.mean, self.data.std, resolution)
        entry["accuracy"] = accuracy
        self._save()
        return accuracy

    def _save(self) -> None:
        if self.ledger is not None:
            text = json.dumps({"reads": self._entries}, indent=1)
            write_atomic(self.ledger, lambda tmp: tmp.write_text(text))


def top1(child: nn.Module, images: ImageSet, mean, std, resolution: int) -> float:
    """Top-1 accuracy of a plain (exported) child on ``images`` at ``resolution``."""
    child.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), EVAL_BATCH):
            x = to_model_input(images.images[start:start + EVAL_BATCH], mean, std, resolution)
            correct += int((child(x).argmax(1) == images.labels[start:start + EVAL_BATCH]).sum())
    return correct / max(1, len(images))


def logistic_regression_baseline(data: DataSplits, max_images: int = 20_000) -> dict[str, Any] | None:
    """scikit-learn's LogisticRegression on raw pixels: the floor a trained network must beat.

    Skipped (None) on datasets too large for a quick fit. Reads the test split: call it only from
    the final report, next to the final models.
    """
    if len(data.train) > max_images:
        return None
    from sklearn.linear_model import LogisticRegression

    def flat(images: ImageSet) -> np.ndarray:
        return images.images.reshape(len(images), -1).float().div(255.0).numpy()

    started = time.perf_counter()
    model = LogisticRegression(max_iter=2000).fit(flat(data.train), data.train.labels.numpy())
    return {"model": "logistic regression (pixels)",
            "val_accuracy": float(model.score(flat(data.val), data.val.labels.numpy())),
            "test_accuracy": float(model.score(flat(data.test), data.test.labels.numpy())),
            "seconds": time.perf_counter() - started}
