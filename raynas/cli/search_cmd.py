"""Multi-objective search with an Optuna sampler: over a trained checkpoint (BN scores, calibration on
Ray actors), over a space whose children the BPE proxy trains standalone (`--evaluator proxy`), or
with a training-free estimator over a checkpoint's children or a space's at seeded initialisation
(`--evaluator EXPR`)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from raynas.checkpoint import LoadedCheckpoint, load_checkpoint
from raynas.cli.calibrate_cmd import add_pool_options, pool_config
from raynas.cli.common import add_address, at_least, non_negative_int, positive_int
from raynas.cli.estimate_common import add_depth_rule, checkpoint_data, space_at_init
from raynas.cli.funnel_search import add_funnel_options, add_pool_option, read_pool
from raynas.data import DataSplits
from raynas.estimate.training_free import DEFAULT_PROBE_IMAGES, ProbeBatch
from raynas.ray_env import ensure_ray
from raynas.results.folder_lock import FolderLock
from raynas.search import EvaluatorPool
from raynas.search.pool import PoolConfig, UntrainedSupernet
from raynas.search.recipes import default_estimator
from raynas.search.samplers import SAMPLERS
from raynas.search.runner import SearchRunner, Subject
from raynas.search.study import (
    ACCURACY_EVALUATORS,
    SearchConfig,
    SearchResult,
    check_folder,
    search,
    search_probe,
)
from raynas.errors import ConfigError
from raynas.space import SearchSpace, load_space

if TYPE_CHECKING:  # the latency module pulls in torch: load it only when a table is given
    from raynas.estimate.latency import LatencyTable


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="CHECKPOINT|SPACE",
                        help="a trained supernet checkpoint; with --evaluator proxy, a space name or .yaml path; "
                             "with an estimator expression, either")
    add_search_options(parser)
    add_prescreen_options(parser)
    add_pool_option(parser)
    add_funnel_options(parser)
    parser.add_argument("--evaluator", default=None, metavar="calibrate|proxy|EXPR",
                        help="what scores a child: calibrate (the accuracy of a BN-calibrated child of the "
                             "checkpoint), proxy (the accuracy of each child trained on its own under --setting; no "
                             "checkpoint), or "
                             "an estimator expression (objective estimate: naswot, fuse:naswot*2+flops, "
                             "vote:synflow+jacov+snip, ranker:FILE; training-free, on children of the checkpoint, or "
                             "of a space's supernet at seeded initialisation); default: calibrate on a checkpoint, the family's "
                             "measured best estimator (raynas.search.recipes.default_estimator) on a space")
    parser.add_argument("--probe-images", type=positive_int, default=DEFAULT_PROBE_IMAGES,
                        help="with an estimator expression: images in the fixed probe minibatch (drawn by "
                             "--search-seed)")
    parser.add_argument("--setting", type=Path, default=None,
                        help="with --evaluator proxy: YAML of proxy setting keys or a bpe_result.json of `raynas "
                             "bpe` (default: the paper's BPE1)")
    parser.add_argument("--data", default=None,
                        help="DATA for calibration and the probe minibatch (default: the checkpoint's dataset), or for "
                             "the proxy's training and a space's probe minibatch (default: digits)")
    add_pool_options(parser)
    parser.add_argument("--wait-timeout", type=float, default=600.0,
                        help="seconds a joined cluster may take to make room for the actors (default 600)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run directory (results/, run.json, study.journal); re-using it resumes its search, "
                             "which must have the same checkpoint and settings (--trials may grow)")
    parser.add_argument("--new-run", action="store_true",
                        help="start a new search in the first free sub-folder OUT/run-N instead of resuming OUT")
    add_address(parser)


def add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objectives", default=None,
                        help="comma-separated: bn_score|accuracy|estimate, flops, params, latency_ms (default "
                             "bn_score,flops; accuracy,flops with --evaluator proxy; estimate,flops with an estimator "
                             "expression)")
    parser.add_argument("--constraint", action="append", default=[], help="e.g. 'flops<=2e8' (repeatable)")
    parser.add_argument("--sampler", default="nsga2", help=f"one of {sorted(SAMPLERS)}")
    parser.add_argument("--trials", type=positive_int, default=1000)
    parser.add_argument("--search-batch", type=positive_int, default=100,
                        help="trials asked and evaluated together (one Parquet file per batch)")
    parser.add_argument("--population", type=at_least(2), default=50, help="population of NSGA-II/III")
    parser.add_argument("--top-k", type=non_negative_int, default=10, help="calibrate the best K of the BN-score stage")
    parser.add_argument("--latency-table", type=Path, default=None, help="table from `raynas latency` for latency_ms")
    parser.add_argument("--run-id", default="search", help="study name; re-using it resumes the search")
    parser.add_argument("--search-seed", type=int, default=0)
    add_depth_rule(parser)


def add_prescreen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prescreen", type=positive_int, default=None, metavar="N",
                        help="before the trials, sample N children, score their table-lookup objectives in bulk "
                             "and enqueue the Pareto front of the feasible ones as the first trials")
    parser.add_argument("--prescreen-keep", type=non_negative_int, default=0, metavar="K",
                        help="with --prescreen: keep the next fronts too, until K children (default 0: the front)")


def search_config(args: argparse.Namespace) -> SearchConfig:
    """``--evaluator`` names an accuracy evaluator (``raynas run`` has none: calibrate), or is an estimator."""
    evaluator = getattr(args, "evaluator", "calibrate") or default_evaluator(args.source)
    estimator = None if evaluator in ACCURACY_EVALUATORS else evaluator
    default = "estimate,flops" if estimator else "accuracy,flops" if evaluator == "proxy" else "bn_score,flops"
    return SearchConfig(objectives=tuple((args.objectives or default).split(",")), constraints=tuple(args.constraint),
                        sampler=args.sampler, trials=args.trials, batch_size=args.search_batch,
                        population=args.population, seed=args.search_seed, top_k=args.top_k, run_id=args.run_id,
                        accuracy_evaluator="calibrate" if estimator else evaluator, estimator=estimator)


def default_evaluator(source: Path) -> str:
    """Calibration on a checkpoint folder; on a space, the training-free estimator measured best for its family."""
    return "calibrate" if source.is_dir() else default_estimator(load_space(str(source)))


def latency_table(args: argparse.Namespace) -> LatencyTable | None:
    if args.latency_table is None:
        return None
    from raynas.estimate.latency import LatencyTable

    return LatencyTable.load(args.latency_table)


def new_run_dir(out: Path) -> Path:
    """The first ``OUT/run-N`` (N = 1, 2, ...) not there yet, created: two ``--new-run`` never share one."""
    n = 1
    while True:
        try:
            (out / f"run-{n}").mkdir(parents=True)
            return out / f"run-{n}"
        except FileExistsError:
            n += 1


def run(args: argparse.Namespace) -> int:
    if args.budget_cpu_s is not None:
        from raynas.cli import funnel_search

        return funnel_search.run(args)
    config = replace(search_config(args), prescreen=args.prescreen or 0, prescreen_keep=args.prescreen_keep)
    latency = latency_table(args)  # every input is read and checked before Ray starts
    if config.accuracy_evaluator == "proxy":
        out, result = _proxy_search(args, config, latency)
    else:
        out, result = _pool_search(args, config, latency)
    print(f"{len(result.study.trials)} trials in {out}; report with: raynas report {out}")
    for row in result.calibrated[:5]:
        print(f"  top-1 {row['accuracy']:.4f}  flops {row['flops'] / 1e6:.2f}M  {row['arch']}")
    return 0


def _pool_search(args: argparse.Namespace, config: SearchConfig,
                 latency: LatencyTable | None) -> tuple[Path, SearchResult]:
    """A search on evaluator actors: BN scores, calibration or estimators of a trained supernet's
    children, or estimators of a space's children at seeded initialisation."""
    source, data, seed = _pool_source(args, config)
    config = _with_pool(args, config, source.space)
    probe = search_probe(config, data, args.probe_images)
    pool_settings = replace(pool_config(args, seed, source.space), wait_timeout=args.wait_timeout)
    SearchRunner(source, config, pool_settings, latency)  # refuses what cannot run before anything starts
    out = _run_folder(args)
    _check_folder(args, out, source, config, pool_settings, probe)
    ensure_ray(args.address)
    calibration = None if isinstance(source, UntrainedSupernet) else data  # an untrained supernet calibrates nothing
    with EvaluatorPool(source, calibration, pool_settings, probe=probe) as actors:
        return out, search(source, actors, out, config, latency)


def _pool_source(args: argparse.Namespace,
                 config: SearchConfig) -> tuple[LoadedCheckpoint | UntrainedSupernet, DataSplits, int]:
    """(the supernet, its data, their seed): a checkpoint folder, or for an estimator a space at initialisation."""
    if config.evaluator != "estimate" or args.source.is_dir():
        checkpoint = load_checkpoint(args.source)
        return checkpoint, checkpoint_data(checkpoint, args.data), checkpoint.config.seed
    source, data = space_at_init(load_space(str(args.source)), args.data or "digits", config.seed)
    return source, data, config.seed


def _proxy_search(args: argparse.Namespace, config: SearchConfig,
                  latency: LatencyTable | None) -> tuple[Path, SearchResult]:
    """A search over a space with no checkpoint: each child trained standalone under the proxy setting."""
    from raynas.bpe.search_evaluator import ProxyEvaluator, proxy_subject
    from raynas.cli.proxy_cmd import setting_from_args
    from raynas.data import load_data
    from raynas.space import load_space

    space = load_space(str(args.source))
    setting = setting_from_args(args, space)
    config = _with_pool(args, config, space)
    data = load_data(args.data or "digits", seed=setting.seed)
    subject = proxy_subject(space, setting, data, args.setting)
    SearchRunner(subject, config, PoolConfig(), latency)  # no actors stand behind a proxy search
    out = _run_folder(args)
    evaluator = ProxyEvaluator(subject, data, out, cpus_per_arch=args.actor_cpus, use_gpu=args.gpu)
    _check_folder(args, out, subject, config, evaluator.config)
    ensure_ray(args.address)
    return out, search(subject, evaluator, out, config, latency)


def _with_pool(args: argparse.Namespace, config: SearchConfig, space: SearchSpace) -> SearchConfig:
    """``config`` restricted to ``--pool``'s architectures; more trials than the pool holds are refused."""
    if args.pool is None:
        return config
    pool = tuple(read_pool(args.pool, space))
    if config.trials > len(pool):
        raise ConfigError(f"--trials {config.trials} is more than the {len(pool)} architectures of --pool {args.pool}; "
                          f"pass --trials {len(pool)} or fewer")
    return replace(config, pool=pool)


def _run_folder(args: argparse.Namespace) -> Path:
    if not args.new_run:
        return args.out
    out = new_run_dir(args.out)
    print(f"[raynas] new search in {out}")
    return out


def _check_folder(args: argparse.Namespace, out: Path, subject: Subject, config: SearchConfig,
                  pool_settings: PoolConfig, probe: ProbeBatch | None = None) -> None:
    """Refuse a busy folder or another search's before any actor or proxy task starts."""
    if args.new_run:
        return
    with FolderLock(out):
        check_folder(out, subject, config, pool_settings, probe)
