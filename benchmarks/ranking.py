"""How well do cheap estimators rank children? Kendall tau / Spearman rho against standalone training.

    python -m benchmarks.ranking --space mbv3_cifar          # CIFAR-10 from ../shared/data
    python -m benchmarks.ranking --space nb201               # a reduced NAS-Bench-201 skeleton

1. Draw N architectures stratified over FLOPs (one per FLOPs quantile bin).
2. Ground truth: train each child from scratch on a short budget, one Ray Tune trial per child.
3. Train a bn_only supernet (sandwich rule), keeping a checkpoint per epoch.
4. Rank the children by: the BN indicator at step 0 (all gammas 1: a structure count) and after
   training (several definitions), calibrated supernet accuracy, FLOPs and params.
5. Report tau and rho of each against the ground truth, and the indicator's tau per epoch.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune
from scipy.stats import kendalltau, spearmanr

from benchmarks.common import OUT, cifar_spec, table, write_json
from raynas.cost import CostModel
from raynas.data import load_data
from raynas.estimate import BNIndicator
from raynas.estimate.calibration import CalibrationConfig, calibrate_and_evaluate
from raynas.ray_env import ensure_ray
from raynas.space import Arch, SearchSpace, load_space, space_from_dict
from raynas.supernet import build_supernet
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet
from raynas.train.data_feed import pack_splits
from raynas.train.standalone import fit_child

INDICATORS = {
    "bn_score (sum, |gamma|)": {"depth_rule": "sum", "measure": "abs_gamma"},
    "bn_score (mean, |gamma|)": {"depth_rule": "mean", "measure": "abs_gamma"},
    "bn_score (sum, |gamma-1|)": {"depth_rule": "sum", "measure": "gamma_shift"},
    "bn_score (sum, |gamma|, skip/pool score 1)": {"depth_rule": "sum", "measure": "abs_gamma",
                                                     "parameterless_score": 1.0},
}
TRIALS_PER_GPU = 4


def benchmark_space(name: str) -> SearchSpace:
    space = load_space(name)
    if name == "nb201":  # C=8, one cell per stage: the benchmark's skeleton at a CPU budget
        return space_from_dict({**space.definition, "name": "nb201_c8_n1", "channels": 8, "cells_per_stage": 1})
    return space


def stratified_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    candidates = space.from_index_matrix(space.sample_index_matrix(40 * n, seed=seed))
    unique = list(dict.fromkeys(candidates))
    flops = CostModel(space).flops(unique)
    order = np.argsort(flops, kind="stable")
    rng = random.Random(seed)
    return [unique[int(rng.choice(list(bin_)))] for bin_ in np.array_split(order, n)]


def harvest(tune_dirs: list[Path], budget: str) -> dict[str, float]:
    """Ground truth of finished trials of earlier (possibly interrupted) Tune runs with the same budget."""
    found = {}
    for result in (p for d in tune_dirs for p in d.glob("*/result.json")):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if lines and "val_accuracy" in lines[-1] and lines[-1]["config"].get("budget") == budget:
            found[lines[-1]["config"]["arch"]] = lines[-1]["val_accuracy"]
    return found


def ground_truth(space: SearchSpace, archs: list[Arch], packed: dict[str, Any], config: TrainConfig,
                 cache: Path, train_missing: bool = True) -> dict[str, float]:
    """Standalone training of every child, one Ray Tune trial each (cached on disk).

    With GPUs in the Ray cluster, ``TRIALS_PER_GPU`` trials share each one (a small child leaves a
    GPU mostly idle); otherwise each trial trains on one CPU core.
    """
    known = json.loads(cache.read_text()) if cache.exists() else {}
    keys = {space.key(a) for a in archs}
    known.update({k: v for k, v in harvest(sorted((OUT / "tune").glob("gt-*")), cache.stem).items() if k in keys})
    todo = [space.key(a) for a in archs if space.key(a) not in known] if train_missing else []
    if todo:
        cpus, gpus = ray.cluster_resources().get("CPU", 1), ray.cluster_resources().get("GPU", 0)
        resources = {"cpu": 1, "gpu": 1 / TRIALS_PER_GPU} if gpus else {"cpu": 1}
        concurrent = int(min(cpus, TRIALS_PER_GPU * gpus) if gpus else cpus)

        def trainable(trial_config: dict[str, Any], packed_data: dict[str, Any]) -> None:
            torch.set_num_threads(1)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            result = fit_child(space, space.arch(trial_config["arch"]), packed_data, config, device=device)
            tune.report({"val_accuracy": result["val_accuracy"], "seconds": result["seconds"], "device": device})

        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, packed_data=packed), resources),
            param_space={"arch": tune.grid_search(todo), "budget": cache.stem},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
            run_config=tune.RunConfig(name=f"gt-{int(time.time())}", storage_path=str(OUT / "tune"), verbose=0),
        )
        for result in tuner.fit():
            if result.error is None:
                known[result.config["arch"]] = result.metrics["val_accuracy"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known, indent=1))
    return {k: known[k] for k in (space.key(a) for a in archs) if k in known}


def correlations(truth: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """Kendall tau (with its two-sided p-value: is the ranking better than chance?) and Spearman rho."""
    tau = kendalltau(truth, estimate)
    return {"kendall_tau": float(tau.statistic), "p_value": float(tau.pvalue),
            "spearman_rho": float(spearmanr(truth, estimate).statistic)}


def indicator_scores(supernet: torch.nn.Module, archs: list[Arch], label: str) -> dict[str, np.ndarray]:
    return {f"{name} {label}": BNIndicator(**options).fit(supernet).score(archs) for name, options in INDICATORS.items()}


def paired_gain(truth: np.ndarray, estimate: np.ndarray, baseline: np.ndarray, resamples: int = 1000,
                seed: int = 0) -> dict[str, float]:
    """tau(estimate) - tau(baseline) on the same children, with a 95% bootstrap interval over children.

    The interval answers "does it really beat the baseline?", which two taus of about +-0.1
    standard error each cannot.
    """
    def gain(rows: np.ndarray) -> float:
        return kendalltau(truth[rows], estimate[rows]).statistic - kendalltau(truth[rows], baseline[rows]).statistic

    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore"):
        draws = np.array([gain(rng.integers(0, len(truth), len(truth))) for _ in range(resamples)])
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return {"tau_gain": float(gain(np.arange(len(truth)))), "ci_low": float(low), "ci_high": float(high)}


def dimension_kind(name: str) -> str:
    """s1_b2_kernel -> kernel, s3_width -> width, edge_0_1 -> edge op, resolution -> resolution."""
    if name.startswith("edge_"):
        return "edge op"
    return name.rsplit("_", 1)[-1] if name.startswith("s") and name[1].isdigit() else name


def discrimination(indicator: BNIndicator, space: SearchSpace, n: int, seed: int) -> list[dict[str, Any]]:
    """Per kind of dimension: the share of pairs differing only there that score differently."""
    rng = random.Random(seed)
    counts: dict[str, list[int]] = {}
    for _ in range(n):
        arch = space.sample(rng)
        for dim in space.dims:
            if dim.name not in arch or len(dim.choices) < 2:
                continue
            other = rng.choice([c for c in dim.choices if c != arch[dim.name]])
            changed = space.arch({**arch.to_dict(), dim.name: other}) if dim.kind != "depth" else None
            if changed is None:  # a depth change adds or removes blocks: sample their choices
                values = {**arch.to_dict(), dim.name: other}
                changed = space.arch({d.name: values.get(d.name, rng.choice(d.choices)) for d in space.dims
                                      if d.is_active(values) or d.name in values})
            a, b = indicator.score([arch, changed])
            counts.setdefault(dimension_kind(dim.name), []).append(int(a != b))
    return [{"dimension": k, "pairs": len(v), "distinguished": sum(v) / len(v)} for k, v in sorted(counts.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="mbv3_cifar")
    parser.add_argument("--data", default=None, help="default: CIFAR-10 JPEGs from ../shared/data")
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--supernet-images", type=int, default=5000)
    parser.add_argument("--supernet-epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.5, help="bn_only learning rate (BN-NAS used 0.25 at batch 512)")
    parser.add_argument("--classifier", choices=["frozen", "trainable"], default="trainable")
    parser.add_argument("--sampling", choices=["sandwich", "uniform"], default="sandwich",
                        help="supernet sampling: BigNAS sandwich rule or SPOS/BN-NAS uniform single path")
    parser.add_argument("--num-random", type=int, default=2)
    parser.add_argument("--bn-layout", default="private", help="mobilenet BN layout (private_resolution: per resolution)")
    parser.add_argument("--gt-images", type=int, default=2500)
    parser.add_argument("--gt-epochs", type=int, default=3)
    parser.add_argument("--val-images", type=int, default=2000)
    parser.add_argument("--calib-images", type=int, default=500)
    parser.add_argument("--gt-repeats", type=int, default=10,
                        help="train this many children again with another seed: the ground truth's own noise")
    parser.add_argument("--gt-average", action="store_true",
                        help="train every child with both seeds and rank against their mean accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the JSON file name, for variants of one space")
    parser.add_argument("--cached-ground-truth-only", action="store_true",
                        help="rank only the drawn children whose standalone accuracy is already known")
    parser.add_argument("--supernet-run", type=Path, default=None,
                        help="re-use the checkpoints of an earlier run folder instead of training again")
    args = parser.parse_args()

    started = time.time()
    ensure_ray(quiet=True)
    space = benchmark_space(args.space)
    data_spec = args.data or cifar_spec()
    data = load_data(data_spec, seed=args.seed, max_val_images=args.val_images)
    archs = stratified_archs(space, args.archs, args.seed)
    packed = pack_splits(data, args.gt_images)

    def truth_with_seed(seed: int, children: list[Arch]) -> dict[str, float]:
        config = TrainConfig(mode="full", epochs=args.gt_epochs, batch_size=64, lr=0.1, train_images=args.gt_images,
                             seed=seed, log_every_epoch=False)
        cache = OUT / f"ground_truth_{space.name}_{args.gt_images}x{args.gt_epochs}_v{args.val_images}_s{seed}.json"
        return ground_truth(space, children, packed, config, cache, train_missing=not args.cached_ground_truth_only)

    first_seed = truth_with_seed(args.seed, archs)
    archs = [a for a in archs if space.key(a) in first_seed]
    repeats = len(archs) if args.gt_average else args.gt_repeats
    repeated = truth_with_seed(args.seed + 1, archs[::max(1, len(archs) // repeats)][:repeats] if repeats else [])
    if args.gt_average:
        archs = [a for a in archs if space.key(a) in repeated]
    truth = np.array([(first_seed[k] + repeated[k]) / 2 if args.gt_average else first_seed[k]
                      for k in map(space.key, archs)])
    gt_seconds = time.time() - started

    config = TrainConfig(mode="bn_only", epochs=args.supernet_epochs, batch_size=64, lr=args.lr,
                         classifier=args.classifier, sampling=args.sampling, num_random=args.num_random,
                         bn_layout=args.bn_layout,
                         train_images=args.supernet_images, seed=args.seed, log_every_epoch=True)
    run_dir = args.supernet_run
    if run_dir is None:
        run_dir = train_supernet(space, data, config, Scaling(num_workers=0), out_dir=OUT / "ranking_runs",
                                 name=f"{space.name}-{int(time.time())}").run_dir
    epochs = sorted(run_dir.glob("checkpoint_epoch_*"))
    checkpoint = load_checkpoint(epochs[-1])
    step0 = build_supernet(space, data.num_classes, data.channels, seed=args.seed, bn_layout=config.bn_layout)

    untrained = indicator_scores(step0, archs, "@ step 0")
    trained = indicator_scores(checkpoint.supernet, archs, f"@ epoch {checkpoint.epoch}")
    calibration = CalibrationConfig(images=args.calib_images, seed=args.seed)
    calibrated = [calibrate_and_evaluate(checkpoint.supernet, a, data.calib, data.val, data.mean, data.std,
                                         calibration)["accuracy"] for a in archs]
    costs = CostModel(space, data.num_classes, data.channels).costs(archs)
    scores = {**untrained, **trained, f"calibrated supernet accuracy ({args.calib_images} images)": np.array(calibrated),
              "FLOPs": costs["flops"], "params": costs["params"]}
    rows = [{"estimator": name, **correlations(truth, values)} for name, values in scores.items()]
    baselines = {"step 0 (structure count)": next(iter(untrained.values())), "params": costs["params"]}
    gains = [{"trained indicator": name, "baseline": base, **paired_gain(truth, values, baselines[base], seed=args.seed)}
             for name, values in trained.items() for base in baselines]
    if len(repeated) > 2:
        again = np.array(list(repeated.values()))
        first = np.array([first_seed[k] for k in repeated])
        rows.append({"estimator": f"ground truth, seed {args.seed + 1} vs {args.seed} ({len(repeated)} children)",
                     **correlations(first, again)})

    per_epoch = []
    for folder in epochs:
        ck = load_checkpoint(folder)
        per_epoch.append({"epoch": ck.epoch, **{
            name: correlations(truth, BNIndicator(**o).fit(ck.supernet).score(archs))["kendall_tau"]
            for name, o in INDICATORS.items()}})

    separated = discrimination(BNIndicator().fit(checkpoint.supernet), space, 100, args.seed)

    print(f"\nranking on {space.name}: {len(archs)} of {args.archs} drawn children, ground truth = standalone training "
          f"({args.gt_images} images x {args.gt_epochs} epochs, top-1 on {len(data.val)} val images"
          f"{', mean of 2 seeds' if args.gt_average else ''}, "
          f"range {truth.min():.3f}..{truth.max():.3f})")
    print(table(rows, ["estimator", "kendall_tau", "p_value", "spearman_rho"]))
    print("\ndoes the trained indicator beat its step-0 value and #params? (tau difference, 95% bootstrap interval)")
    print(table(gains, ["trained indicator", "baseline", "tau_gain", "ci_low", "ci_high"]))
    print("\ndoes the trained BN indicator tell each dimension apart? (pairs of children differing in one dimension)")
    print(table(separated, ["dimension", "pairs", "distinguished"]))
    print("\nBN indicator Kendall tau per bn_only epoch")
    print(f"(supernet: {run_dir})")
    print(table(per_epoch, ["epoch", *INDICATORS]))
    path = write_json(f"ranking_{args.space}{args.tag}", {
        "args": vars(args), "space": space.name, "archs": [space.key(a) for a in archs], "truth": truth.tolist(),
        "truth_repeated": repeated,
        "calibrated_accuracy": calibrated, "rows": rows, "gains": gains, "per_epoch": per_epoch, "discrimination": separated,
        "ground_truth_seconds": gt_seconds, "total_seconds": time.time() - started,
        "supernet_run": str(run_dir), "supernet_final_metrics": checkpoint.metrics[-1]})
    print(f"\nwrote {path} in {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
