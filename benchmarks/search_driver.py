"""Driver cost of an ask/tell BN-score search: trials per second with 1 and 2 evaluator actors.

    python -m benchmarks.search_driver --checkpoint benchmarks/out/estimate_speed_runs/<run>/checkpoint_epoch_0001

NSGA-II over all dimensions of the checkpoint's space, batches of 100, BN score + FLOPs. A BN
score is a table lookup, so what this measures is the search loop itself (Optuna ask/tell,
cheap objectives, the pool round trip, Parquet and journal writes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import table, write_json
from raynas.ray_env import ensure_ray
from raynas.search import EvaluatorPool, PoolConfig
from raynas.search.study import SearchConfig, search
from raynas.train import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--search-batch", type=int, default=100, help="trials per batch")
    args = parser.parse_args()
    ensure_ray(quiet=True)
    checkpoint = load_checkpoint(args.checkpoint)
    rows = []
    for actors in (1, 2):
        with EvaluatorPool(checkpoint, None, PoolConfig(num_actors=actors, num_cpus=0.9)) as pool, \
                tempfile.TemporaryDirectory() as out:
            pool.score([checkpoint.space.min()])  # actors up before timing
            started = time.perf_counter()
            search(checkpoint, pool, out, SearchConfig(trials=args.trials, batch_size=args.search_batch, top_k=0),
                   progress=False)
            seconds = time.perf_counter() - started
        rows.append({"actors": actors, "trials": args.trials, "seconds": seconds,
                     "trials_per_s": args.trials / seconds, "ms_per_trial": 1000 * seconds / args.trials})
    print(f"\nBN-score search driver on {checkpoint.space.name}")
    print(table(rows, ["actors", "trials", "seconds", "trials_per_s", "ms_per_trial"]))
    print(f"wrote {write_json('search_driver', {'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
