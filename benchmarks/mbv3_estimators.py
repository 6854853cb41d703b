"""Training-free estimators on ``mbv3_cifar`` against the short-training truth of ``benchmarks.ranking``.

    python -m benchmarks.mbv3_estimators [--fuse fuse:zico+jacov ...]

The truth is the one the BN-indicator benchmark uses: 50 children drawn stratified over FLOPs,
each trained from scratch on 2,500 CIFAR-10 images for 3 epochs (one Ray Tune trial each, cached
in ``benchmarks/out``). Each estimator scores the same children at initialisation, sliced from a
seeded supernet, on one seeded minibatch of 64 training images. Reported per estimator and
fusion: Spearman, Kendall and top-5% precision with bootstrap intervals, CPU-seconds per child,
and the paired Spearman gain over #params with its 95% interval. Writes
``benchmarks/out/mbv3_estimators.json``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from benchmarks import estimator_ranking as er
from benchmarks.common import OUT, cifar_spec, table, write_json
from benchmarks.ranking import ground_truth, stratified_archs
from raynas.data import load_data
from raynas.estimate.training_free import ProbeBatch, ScoringContext, score_children
from raynas.ray_env import ensure_ray
from raynas.space import load_space
from raynas.supernet import build_supernet
from raynas.train import TrainConfig
from raynas.train.data_feed import pack_splits

ESTIMATORS = ["naswot", "jacov", "synflow", "snip", "grad_norm", "zico", "params", "flops", "bn_score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--fuse", action="append", default=[], help="a fuse:/vote: expression to judge too")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cached-ground-truth-only", action="store_true",
                        help="judge only the drawn children whose short-training accuracy is already cached")
    args = parser.parse_args()
    ensure_ray(quiet=True)
    space = load_space("mbv3_cifar")
    data = load_data(cifar_spec(), seed=args.seed, max_val_images=2000)
    archs = stratified_archs(space, args.archs, args.seed)
    config = TrainConfig(mode="full", epochs=3, batch_size=64, lr=0.1, train_images=2500, seed=args.seed,
                         log_every_epoch=False)
    cache = OUT / f"ground_truth_{space.name}_2500x3_v2000_s{args.seed}.json"
    truth = ground_truth(space, archs, pack_splits(data, 2500), config, cache,
                         train_missing=not args.cached_ground_truth_only)
    archs = [a for a in archs if space.key(a) in truth]
    keys = [space.key(a) for a in archs]
    context = ScoringContext(build_supernet(space, data.num_classes, data.channels, seed=args.seed),
                             ProbeBatch.from_splits(data, 64, args.seed), {"depth_rule": "mean"})
    scores = score_children(context, archs, ESTIMATORS)
    frame = pd.DataFrame({**scores.values, **{f"{n}_cpu_s": v for n, v in scores.cpu_seconds.items()}},
                         index=keys)
    rankers = er.base_rankers(frame) + [er.fused(frame, text) for text in args.fuse]
    true = np.array([truth[k] for k in keys])
    params = scores.values["params"]
    rows = []
    for ranker in rankers:
        judged = er.judge(ranker, truth, args.resamples)
        rows.append({**judged, **er.paired_spearman_gain(true, ranker.scores, params, args.resamples)})
    shown = [{"ranker": r["ranker"], "rho [95% CI]": f"{r['spearman_rho']:.3f} [{r['spearman_rho_low']:.2f}, "
              f"{r['spearman_rho_high']:.2f}]", "tau": f"{r['kendall_tau']:.3f}",
              "rho gain over #params [95% CI]": f"{r['rho_gain']:+.3f} [{r['gain_low']:+.2f}, {r['gain_high']:+.2f}]",
              "CPU-s/child": f"{r['cpu_seconds_per_cell']:.3f}"} for r in sorted(rows, key=lambda r: -r["spearman_rho"])]
    print(f"{len(keys)} mbv3_cifar children, truth: 2,500 images x 3 epochs (mean val top-1 {true.mean():.3f})")
    print(table(shown, list(shown[0])))
    print(f"wrote {write_json('mbv3_estimators', {'children': len(keys), 'rows': rows, 'truth': truth})}")


if __name__ == "__main__":
    main()
