"""One table over every ranking run in benchmarks/out: which supernet training moves the BN indicator?

    python -m benchmarks.ranking_summary                 # all ranking_*.json files
    python -m benchmarks.ranking_summary --space nb201

Each row is one `benchmarks.ranking` run (one supernet training recipe against one ground truth):
Kendall tau of the step-0 indicator, of the trained indicators, of calibrated supernet accuracy and
of #params, the ground truth's own seed-to-seed tau, and the trained indicators' tau gains over
step 0 and over #params with their 95% bootstrap intervals.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.common import OUT, table, write_json


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    args = run["args"]
    tau = {r["estimator"].split(" @ ")[0] + (" @0" if "@ step 0" in r["estimator"] else ""): r["kendall_tau"]
           for r in run["rows"]}
    gains = {(g["trained indicator"].split(" @ ")[0], g["baseline"].split(" ")[0]): g for g in run.get("gains", [])}
    gain_step0 = gains.get(("bn_score (sum, |gamma|)", "step"), {})
    gain_params = gains.get(("bn_score (sum, |gamma|)", "params"), {})
    shift_gain_params = gains.get(("bn_score (sum, |gamma-1|)", "params"), {})
    mean_gain_params = gains.get(("bn_score (mean, |gamma|)", "params"), {})
    self_agreement = next((r["kendall_tau"] for r in run["rows"] if r["estimator"].startswith("ground truth")), None)
    calibrated = next((v for k, v in tau.items() if k.startswith("calibrated")), None)
    return {
        "space": run["space"], "recipe": _recipe(args), "children": len(run["archs"]),
        "gt": f"{args['gt_images']}x{args['gt_epochs']}" + (" 2 seeds" if args.get("gt_average") else ""),
        "gt seed vs seed": self_agreement, "step 0": tau.get("bn_score (sum, |gamma|) @0"),
        "trained |g|": tau.get("bn_score (sum, |gamma|)"), "trained mean |g|": tau.get("bn_score (mean, |gamma|)"),
        "trained |g-1|": tau.get("bn_score (sum, |gamma-1|)"),
        "calibrated": calibrated, "params": tau.get("params"),
        "|g| gain vs step 0 [95% CI]": _interval(gain_step0), "|g| gain vs params [95% CI]": _interval(gain_params),
        "|g-1| gain vs params [95% CI]": _interval(shift_gain_params),
        "mean |g| gain vs params [95% CI]": _interval(mean_gain_params),
    }


def _recipe(args: dict[str, Any]) -> str:
    return (f"{args.get('sampling', 'sandwich')} lr {args['lr']} x{args['supernet_epochs']} ep "
            f"{args.get('classifier', 'trainable')} cls {args.get('bn_layout', 'private')}")


def _interval(gain: dict[str, float]) -> str:
    return f"{gain['tau_gain']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}]" if gain else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=None, help="only runs of this space (mbv3_cifar, nb201)")
    args = parser.parse_args()
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("ranking_*.json")) if p.stem != "ranking_summary"]
    rows = [summarise(r) for r in runs if args.space is None or r["args"]["space"] == args.space]
    columns = ["space", "recipe", "children", "gt", "gt seed vs seed", "step 0", "trained |g|", "trained mean |g|",
               "trained |g-1|",
               "calibrated", "params", "|g| gain vs step 0 [95% CI]", "|g| gain vs params [95% CI]",
               "|g-1| gain vs params [95% CI]", "mean |g| gain vs params [95% CI]"]
    print(table(rows, columns))
    print(f"\nwrote {write_json('ranking_summary', {'rows': rows})}")


if __name__ == "__main__":
    main()
