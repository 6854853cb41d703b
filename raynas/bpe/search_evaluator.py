"""The BPE proxy as an evaluator of ``raynas search`` (``--evaluator proxy --setting FILE``).

Where the BN indicator cannot tell children apart (on nb201 it sees no difference between
parameter-free ops: skip, pooling and none own no BN), a search can rank by the proxy instead:
every feasible child is trained on its own under the proxy setting (``proxy_evaluate``, one Ray
task each) and its val top-1 is the ``accuracy`` objective of its row (``evaluator: proxy``).

The search runs over a ``ProxySubject`` (the space, the data's description and an id naming the
setting and data) instead of a supernet checkpoint, and asks a ``ProxyEvaluator`` instead of the
actor pool. Proxy rows are kept in ``OUT/proxy/proxy.parquet``: a resumed search trains no child
twice, not even one whose trial row was lost with a killed driver.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raynas.bpe.proxy import OK, proxy_child_space, proxy_evaluate, proxy_identity
from raynas.bpe.proxy_setting import ProxySetting
from raynas.data import DataSplits
from raynas.search.pool import PoolConfig
from raynas.search.runner import records
from raynas.space import Arch, SearchSpace
from raynas.model_record import DataInfo, ModelRecord

PROXY_FOLDER = "proxy"
EVALUATOR = "proxy"


@dataclass(frozen=True)
class ProxySubject:
    """What a proxy search runs over, in the place of a checkpoint: rows carry ``checkpoint_id``."""

    space: SearchSpace
    data: DataInfo
    setting: ProxySetting
    checkpoint_id: str
    path: Path | None = None
    """The setting file (recorded in ``run.json``); no supernet weights stand behind a proxy search."""

    @property
    def model(self) -> ModelRecord:
        """The searched space on its data (each child is built standalone from it)."""
        return ModelRecord.of(self.space, self.data)


def proxy_subject(space: SearchSpace, setting: ProxySetting, data: DataSplits,
                  setting_file: str | os.PathLike[str] | None = None) -> ProxySubject:
    """The subject of a proxy search; its id changes with the space, the setting or the data, so a
    search resumed under another of them is refused (``run_identity``)."""
    proxy_child_space(space, setting)  # refuses a family the proxy cannot map
    described = json.dumps(proxy_identity(space, data.name, setting), sort_keys=True)
    digest = hashlib.sha1(described.encode()).hexdigest()[:10]
    name = f"proxy@c{setting.channels}-n{setting.cells_per_stage}-r{setting.resolution}-e{setting.epochs}-{digest}"
    return ProxySubject(space, DataInfo.of(data), setting, name, None if setting_file is None else Path(setting_file))


@dataclass
class ProxyEvaluator:
    """Trains children standalone under the subject's setting; one search row per child, in order."""

    subject: ProxySubject
    data: DataSplits
    out_dir: Path
    cpus_per_arch: float = 1.0
    use_gpu: bool = False
    config: PoolConfig = field(default_factory=PoolConfig)
    """No actors stand behind it; the defaults say "no calibration, no depth rule" to the run identity."""

    def evaluate(self, archs: list[Arch]) -> list[dict[str, Any]]:
        subject = self.subject
        frame = proxy_evaluate(subject.space, archs, subject.setting, self.data, self.out_dir / PROXY_FOLDER,
                               use_gpu=self.use_gpu, cpus_per_arch=self.cpus_per_arch)
        return [self._row(row) for row in records(frame)]

    def _row(self, proxy: dict[str, Any]) -> dict[str, Any]:
        seconds = float(proxy["seconds"])
        if proxy["status"] != OK or not math.isfinite(proxy["proxy_accuracy"]):
            return {"status": "failed", "evaluator": EVALUATOR, "eval_seconds": seconds,
                    "error": f"proxy training failed: {proxy['error']}"}
        return {"status": "ok", "evaluator": EVALUATOR, "accuracy": float(proxy["proxy_accuracy"]), "split": "val",
                "epochs": self.subject.setting.epochs, "eval_seconds": seconds}
