"""Report a run directory: the Pareto table, the hypervolume, and front.csv, pareto.png, summary.json."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from raynas.results.report import RunDir, format_table, load_report, write_report


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="run directory: DIR/results/ (Parquet) and DIR/run.json")
    parser.add_argument("--objectives", default=None,
                        help="comma-separated, e.g. accuracy,flops; default: accuracy (or bn_score),flops")
    parser.add_argument("--evaluator", default=None,
                        help="whose rows to use (calibrate, bn_score, ...); default: calibrate, else bn_score")
    parser.add_argument("--run-id", default=None,
                        help="which search's rows, when DIR holds several; default: the only one, else run.json's")
    parser.add_argument("--space", default=None, help="space name or .yaml path, for a DIR without run.json")
    parser.add_argument("--reference", type=_numbers, default=None,
                        help="hypervolume reference point, one value per objective (e.g. 0,2e8); default: each "
                             "objective's worst possible value (space's largest child for flops/params, 0 for "
                             "accuracy and bn_score), else the rows' nadir")


def _numbers(text: str) -> list[float]:
    """``0,2e8`` -> [0.0, 2e8]; anything else is argparse's one-line error."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers such as 0,2e8, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"must be finite numbers, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()] if args.objectives else None
    report = load_report(args.dir, objectives, args.evaluator, args.space, args.run_id, args.reference)
    paths = write_report(report, RunDir(args.dir).report)
    print(f"space {report.space.name}, evaluator {report.evaluator}, objectives "
          + ", ".join(f"{o} ({d})" for o, d in zip(report.objectives, report.directions)))
    print(report.counts_line())
    print(format_table(report.front, report.objectives))
    reference = ", ".join(f"{o} {r:.6g} ({source})" for o, r, source in
                          zip(report.objectives, report.reference, report.reference_sources))
    print(f"hypervolume: {report.hypervolume:.6g} (normalized {report.hypervolume_normalized:.4f}; "
          f"reference {reference})")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
