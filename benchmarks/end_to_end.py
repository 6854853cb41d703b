"""Does the search earn its cost? The main job against simple ways of picking a child.

For each seed, on one dataset, every method ends with trained models that are tested once:
- raynas default (``raynas run``): the funnel, candidates anywhere under each budget, ASHA, the
  survivor trained in full;
- raynas BN-NAS band (``raynas run --shortlist band --per-target 3 --sampler nsga2``): the
  main job before the funnel, BN-NAS's best-scored children of each cost band;
- raynas BigNAS path (``raynas run --mode full``);
- random search: as many random children per target as the default has candidates, from
  anywhere under the budget, trained the same way (ASHA short stage, then the best in full);
- the child with the most #params under each target, trained in full;
- the largest child, trained in full;
- on small data, LogisticRegression on pixels and a small hand-written CNN.
The default, random search and #params get the same retraining recipe (epochs, targets); the
paired difference default minus random search is printed at the end.

    python -m benchmarks.end_to_end --data digits --seeds 0 1 2
    python -m benchmarks.end_to_end --data cifar --seeds 0 1 2 --train-images 4000 --val-images 1000 \
        --supernet-epochs 6 --bignas-epochs 15 --short-epochs 4 --final-epochs 12
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from torch import nn

from benchmarks.common import OUT, cifar_spec, table, write_json
from raynas.cli.main import build_parser
from raynas.cli.run_cmd import run as run_main_job
from raynas.data import DataSplits, load_data, to_model_input
from raynas.protocol.delivery import deliver
from raynas.protocol.final import FinalModel, logistic_regression_baseline, top1
from raynas.protocol.main_job import default_recipe
from raynas.protocol.retraining import RetrainRecipe, final_stage, short_stage
from raynas.ray_env import ensure_ray
from raynas.results import ResultStore
from raynas.search.costs import CheapObjectives
from raynas.space import SearchSpace, load_space
from raynas.train.data_feed import pack_splits


BAND_PATH = ["--shortlist", "band", "--per-target", "3", "--sampler", "nsga2"]
"""The main job before the funnel: BN-NAS's band shortlist of 3 over an NSGA-II search."""


def main_job(args: argparse.Namespace, data: DataSplits, seed: int, mode: str, out: Path,
             extra: list[str] | None = None) -> dict[str, Any]:
    epochs = args.bignas_epochs if mode == "full" else args.supernet_epochs
    argv = ["run", "--space", args.space, "--data", data.name, "--out", str(out), "--seed", str(seed),
            "--mode", mode, "--targets", str(args.targets)] + (["--epochs", str(epochs)] if epochs else [])
    argv += extra or []
    argv += [f"--{k}-epochs={v}" for k, v in (("short", args.short_epochs), ("final", args.final_epochs)) if v]
    started = time.perf_counter()
    run_main_job(build_parser().parse_args(argv), data)
    summary = json.loads((out / "final.json").read_text())
    return {"models": summary["models"], "wall_s": time.perf_counter() - started}


def retrained_baseline(name: str, space: SearchSpace, data: DataSplits, picks: dict[float, list[str]],
                       recipe: RetrainRecipe, out: Path, short: bool) -> dict[str, Any]:
    """Train ``picks`` the way BN-NAS trains its shortlist (ASHA when ``short``, else straight to
    full training of the single pick per target), then test each winner once."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out / "results", space)
    cheap = CheapObjectives(space, data.num_classes, data.channels)
    packed = pack_splits(data)
    winners = (short_stage(space, picks, packed, recipe, out, store, cheap) if short
               else {t: archs[0] for t, archs in picks.items()})
    retrained = final_stage(space, winners, packed, recipe, out, store, cheap)
    finals = [FinalModel(r.target, r.arch, r.val_accuracy, r.seconds, r.child, f"{name}, retrained")
              for r in retrained]
    frame = deliver(space, data, finals, "flops", out, store, cheap, recipe.final.bn_layout)
    return {"models": frame.to_dict("records"), "wall_s": time.perf_counter() - started}


def retrain_recipe(args: argparse.Namespace, data: DataSplits) -> RetrainRecipe:
    """The main job's retraining recipe, with the same overrides: equal retraining budgets."""
    recipe = default_recipe(data)
    short = recipe.short.replace(epochs=args.short_epochs) if args.short_epochs else recipe.short
    final = recipe.final.replace(epochs=args.final_epochs) if args.final_epochs else recipe.final
    return replace(recipe, short=short, final=final)


def random_picks(space: SearchSpace, cheap: CheapObjectives, targets: list[float], per_target: int,
                 seed: int) -> dict[float, list[str]]:
    """``per_target`` random children from anywhere under each budget, as the default's candidates;
    none twice."""
    rng = random.Random(seed)
    pool = {space.key(a): a for a in (space.sample(rng) for _ in range(4000))}
    keys = list(pool)
    flops = cheap([pool[k] for k in keys])["flops"]
    picks, taken = {}, set()
    for target in sorted(targets):
        fits = [k for k, f in zip(keys, flops) if f <= target and k not in taken]
        picks[target] = rng.sample(fits, min(per_target, len(fits)))
        taken.update(picks[target])
    return picks


def params_picks(space: SearchSpace, cheap: CheapObjectives, targets: list[float], bnnas_dir: Path) -> dict[float, list[str]]:
    """Per target, the searched child with the most parameters within the budget."""
    rows = ResultStore(bnnas_dir / "results", space).to_pandas()
    rows = rows[(rows["evaluator"] == "bn_score") & (rows["status"] == "ok")].drop_duplicates("arch")
    return {t: [rows[rows["flops"] <= t].sort_values("params", ascending=False)["arch"].iloc[0]] for t in targets}


class SmallCNN(nn.Module):
    """A hand-written 3-conv network: what a practitioner would try before any NAS."""

    def __init__(self, in_channels: int, classes: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, stride=2), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def small_cnn(data: DataSplits, seed: int, epochs: int = 30) -> dict[str, Any]:
    resolution = max(16, data.image_size)
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = SmallCNN(data.channels, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * (len(data.train) // 32)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(data.train), generator=gen)
        for i in range(0, len(order) - 31, 32):
            index = order[i:i + 32]
            x = to_model_input(data.train.images[index], data.mean, data.std, resolution)
            loss = nn.functional.cross_entropy(model(x), data.train.labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    params = sum(p.numel() for p in model.parameters())
    return {"val_top1": top1(model, data.val, data.mean, data.std, resolution),
            "test_top1": top1(model, data.test, data.mean, data.std, resolution), "params": params,
            "wall_s": time.perf_counter() - started}


def one_seed(args: argparse.Namespace, spec: str, seed: int) -> list[dict[str, Any]]:
    data = load_data(spec, seed=seed, max_train_images=args.train_images, max_val_images=args.val_images)
    space = load_space(args.space)
    cheap = CheapObjectives(space, data.num_classes, data.channels)
    out = OUT / "end_to_end" / f"{args.data}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    rows = []

    def add(method: str, result: dict[str, Any]) -> None:
        for i, model in enumerate(result["models"]):
            rows.append({"method": method, "seed": seed, "target": i + 1, "arch": model["arch"],
                         "flops": model["flops"], "params": model["params"], "val_top1": model["val_top1"],
                         "test_top1": model["test_top1"], "wall_s": result["wall_s"]})

    bnnas = main_job(args, data, seed, "bn_only", out / "bnnas")
    add("raynas default", bnnas)
    targets = [m["target"] for m in bnnas["models"]]
    recipe = retrain_recipe(args, data)
    if "band" in args.methods:
        add("raynas BN-NAS band", main_job(args, data, seed, "bn_only", out / "band", BAND_PATH))
    if "bignas" in args.methods:
        add("raynas BigNAS", main_job(args, data, seed, "full", out / "bignas"))
    if "random" in args.methods:
        picks = random_picks(space, cheap, targets, recipe.per_target, seed)
        add("random search", retrained_baseline("random", space, data, picks, recipe, out / "random", short=True))
    if "params" in args.methods:
        picks = params_picks(space, cheap, targets, out / "bnnas")
        add("most #params", retrained_baseline("params", space, data, picks, recipe, out / "params", short=False))
    if "largest" in args.methods:
        picks = {max(targets): [space.key(space.max())]}
        add("largest child", retrained_baseline("largest", space, data, picks, recipe, out / "largest", short=False))
    if len(data.train) <= 20_000 and "logreg" in args.methods:
        baseline = logistic_regression_baseline(data)
        rows.append({"method": "logistic regression", "seed": seed, "target": 0, "val_top1": baseline["val_accuracy"],
                     "test_top1": baseline["test_accuracy"], "wall_s": baseline["seconds"]})
    if "cnn" in args.methods:
        cnn = small_cnn(data, seed, epochs=recipe.final.epochs)
        rows.append({"method": "small CNN (hand-written)", "seed": seed, "target": 0, **cnn})
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    frame = pd.DataFrame(rows)
    out = []
    for (method, target), part in frame.groupby(["method", "target"], sort=False):
        out.append({"method": method, "target": int(target), "seeds": len(part),
                    "test_top1_mean": part["test_top1"].mean(), "test_top1_std": part["test_top1"].std(ddof=1),
                    "val_top1_mean": part["val_top1"].mean(),
                    "flops_mean": part["flops"].mean() if "flops" in part else None,
                    "params_mean": part["params"].mean() if "params" in part else None,
                    "wall_s_mean": part["wall_s"].mean()})
    return out


def paired(rows: list[dict[str, Any]], method: str, baseline: str) -> dict[str, Any] | None:
    """``method`` minus ``baseline`` in test top-1 over the (seed, target) pairs both have."""
    frame = pd.DataFrame(rows)
    both = frame[frame["method"] == method].merge(frame[frame["method"] == baseline], on=["seed", "target"])
    if not len(both):
        return None
    gap = both["test_top1_x"] - both["test_top1_y"]
    return {"method": method, "baseline": baseline, "pairs": len(gap), "mean_points": 100 * gap.mean(),
            "sd_points": 100 * gap.std(ddof=1) if len(gap) > 1 else None, "ahead": int((gap > 0).sum()),
            "tied": int((gap == 0).sum())}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["digits", "cifar"], default="digits")
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--supernet-epochs", type=int, default=None, help="BN-only supernet; default: the main job's")
    parser.add_argument("--bignas-epochs", type=int, default=None, help="full supernet; default: the main job's")
    parser.add_argument("--short-epochs", type=int, default=None, help="default: the main job's")
    parser.add_argument("--final-epochs", type=int, default=None, help="default: the main job's")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--val-images", type=int, default=None)
    parser.add_argument("--methods", default="band,bignas,random,params,largest,logreg,cnn")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    spec = "digits" if args.data == "digits" else cifar_spec()
    ensure_ray(None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for seed in args.seeds:
        rows += one_seed(args, spec, seed)
        write_json(f"end_to_end_{args.data}", {"args": vars(args), "rows": rows, "summary": summarise(rows)})
    summary = summarise(rows)
    print(table(summary, ["method", "target", "seeds", "test_top1_mean", "test_top1_std", "val_top1_mean",
                          "flops_mean", "params_mean", "wall_s_mean"]))
    pairs = [p for b in ("random search", "most #params", "raynas BN-NAS band")
             if (p := paired(rows, "raynas default", b))]
    print(table(pairs, ["method", "baseline", "pairs", "mean_points", "sd_points", "ahead", "tied"]))
    payload = {"args": vars(args), "rows": rows, "summary": summary, "paired": pairs}
    print(f"wrote {write_json(f'end_to_end_{args.data}', payload)}")


if __name__ == "__main__":
    main()
