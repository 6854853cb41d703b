"""Score architectures with training-free estimators, fusions, learned rankers or a checkpoint's BN indicator.

    raynas score nb201 --estimator naswot,flops,fuse:naswot+flops --archs cells.csv --data cifar10:ROOT --out DIR
    raynas score CKPT --all --out scores.parquet          # the BN indicator of a trained supernet

One Parquet row per architecture: ``arch``, each dimension, ``flops`` and ``params``, one column
per estimator expression, and the CPU-seconds each estimator spent per architecture. Network
estimators run on evaluator actors and resume: a rerun with the same settings scores only what
is missing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from raynas.atomic import write_atomic
from raynas.cli.common import add_address, positive_int
from raynas.cli.estimate_common import add_arch_selection, add_depth_rule, checkpoint_data, select_archs, space_at_init
from raynas.cost import CostModel
from raynas.errors import ConfigError
from raynas.estimate import MEASURES, IndicatorSettings
from raynas.estimate.training_free import DEFAULT_PROBE_IMAGES, ProbeBatch, estimator
from raynas.estimate.training_free.fusion import parse_expressions
from raynas.model_record import DataInfo, ModelRecord
from raynas.ray_env import ensure_ray
from raynas.search.pool import PoolConfig, SupernetSource, UntrainedSupernet
from raynas.search.recipes import default_estimator, resolve_depth_rule
from raynas.search.scoring import PartStore, identity_of, score_architectures
from raynas.space import load_space
from raynas.train import LoadedCheckpoint, load_checkpoint


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a space (name or .yaml) for training-free scores at initialisation, "
                                       "or a training checkpoint folder (its trained supernet)")
    add_arch_selection(parser, allow_all=True)
    parser.add_argument("--estimator", default=None,
                        help="NAME[,NAME...]: registered estimators (naswot, jacov, synflow, snip, grad_norm, zico, "
                             "params, flops, bn_score), fuse:A*W+B (sum of log-ranks), vote:A+B+C, ranker:FILE; "
                             "default: bn_score on a checkpoint, the family's recommended fusion on a space")
    parser.add_argument("--data", default=None,
                        help="the probe minibatch's dataset (default: a checkpoint's own, else digits)")
    parser.add_argument("--probe-images", type=positive_int, default=DEFAULT_PROBE_IMAGES,
                        help="images in the fixed, seeded probe minibatch")
    add_depth_rule(parser)
    parser.add_argument("--measure", choices=sorted(MEASURES), default="abs_gamma")
    parser.add_argument("--actors", type=positive_int, default=1, help="evaluator actors for network estimators")
    add_address(parser)
    parser.add_argument("--out", type=Path, required=True,
                        help="a folder (scores.parquet in it) or a .parquet file; resumed when rerun")


def _source(args: argparse.Namespace) -> tuple[SupernetSource, str]:
    """(supernet, its data spec) of a checkpoint folder or a space (its data's classes until the data is read)."""
    target = Path(args.target)
    if target.is_dir():
        checkpoint = load_checkpoint(target)
        return checkpoint, args.data or checkpoint.data.spec
    space = load_space(args.target)
    return UntrainedSupernet(ModelRecord.of(space, DataInfo("", 10, 3, 32, (0.5,), (0.5,))), args.seed), \
        args.data or "digits"


def _paths(out: Path) -> tuple[Path, Path]:
    """(the table, the folder of its resumable parts)."""
    if out.suffix == ".parquet":
        return out, out.with_name(f".{out.stem}.parts")
    if out.suffix or out.is_file():
        raise ConfigError(f"--out {out}: score writes Parquet, to a folder (scores.parquet in it) or a .parquet file")
    return out / "scores.parquet", out / "parts"


def run(args: argparse.Namespace) -> int:
    table_path, parts = _paths(args.out)  # a wrong kind of --out is refused before anything is read
    source, spec = _source(args)
    space, source_id = source.space, source.checkpoint_id
    is_checkpoint = not isinstance(source, UntrainedSupernet)
    expressions = parse_expressions(args.estimator or ("bn_score" if is_checkpoint else default_estimator(space)))
    archs = select_archs(args, space)
    indicator: IndicatorSettings = {"depth_rule": resolve_depth_rule(args.depth_rule, space), "measure": args.measure}
    reads_images = any(estimator(m).kind == "network" for e in expressions for m in e.members)
    probe = None
    if reads_images or any(e.kind == "ranker" for e in expressions) or args.data:
        if isinstance(source, LoadedCheckpoint):
            data = checkpoint_data(source, spec)
        else:
            source, data = space_at_init(space, spec, args.seed)
        probe = ProbeBatch.from_splits(data, args.probe_images, args.seed)
        ensure_ray(args.address)
    store = PartStore(parts, identity_of(source_id, probe, args.seed, indicator))
    started = time.perf_counter()
    scores = score_architectures(source, archs, expressions, probe=probe, store=store, indicator=indicator,
                                 pool_config=PoolConfig(num_actors=args.actors))
    _write(scores, source, table_path, source_id, args.seed)
    rule = f" ({indicator['depth_rule']} rule)" if "bn_score" in scores else ""
    _summary(scores, [e.text for e in expressions], f"{space.name}{rule}", time.perf_counter() - started)
    print(f"wrote {table_path}")
    return 0


def _write(scores: pd.DataFrame, source: SupernetSource, path: Path, source_id: str, seed: int) -> None:
    space = source.space
    archs = [space.arch(k) for k in scores["arch"]]
    dims = pd.DataFrame([a.to_dict() for a in archs]).astype(str)
    costs = CostModel(space, source.model.num_classes, source.model.in_channels).costs(space.index_matrix(archs))
    table = pd.concat([scores[["arch"]], dims, scores.drop(columns="arch")], axis=1)
    for column in ("flops", "params"):
        if column not in table:
            table[column] = costs[column]
    table["source"], table["seed"] = source_id, seed
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.2f}"


def _summary(scores: pd.DataFrame, columns: list[str], space: str, seconds: float) -> None:
    print(f"scored {len(scores):,} architectures of {space} in {seconds:.3f}s "
          f"({_rate(len(scores) / max(seconds, 1e-9))}/s)")
    for column in columns:
        best = scores.loc[int(np.nanargmax(np.nan_to_num(scores[column].to_numpy(), nan=-np.inf, neginf=-1e300)))]
        cost = scores.get(f"{column}_cpu_s")
        per = f", {cost.mean():.4f} CPU-s per architecture" if cost is not None else ""
        print(f"  {column}: best {best[column]:.4g}: {best['arch']}{per}")
