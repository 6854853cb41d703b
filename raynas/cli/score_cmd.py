"""Score architectures with the BN indicator of a checkpoint (no data, no forward pass)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from raynas.cli.estimate_common import add_arch_selection, add_depth_rule, common_fields, select_archs, write_rows
from raynas.cost import CostModel
from raynas.estimate import MEASURES, BNIndicator
from raynas.search.recipes import resolve_depth_rule
from raynas.train import load_checkpoint


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint folder")
    add_arch_selection(parser, allow_all=True)
    add_depth_rule(parser)
    parser.add_argument("--measure", choices=sorted(MEASURES), default="abs_gamma")
    parser.add_argument("--out", type=Path, required=True, help="output .parquet file")


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    space = checkpoint.space
    archs = select_archs(args, space)
    started = time.perf_counter()
    depth_rule = resolve_depth_rule(args.depth_rule, space)
    indicator = BNIndicator(depth_rule=depth_rule, measure=args.measure).fit(checkpoint.supernet)
    matrix = space.index_matrix(archs)
    scores = indicator.score(matrix)
    seconds = time.perf_counter() - started
    costs = CostModel(space, checkpoint.data.num_classes, checkpoint.data.in_channels).costs(matrix)
    base = common_fields(checkpoint, "score", args.seed)
    rows = [{**base, "trial": i, "arch": space.key(a), "status": "ok", "evaluator": "bn_score",
             "bn_score": float(s), "flops": int(f), "params": int(p), "eval_seconds": seconds / len(archs)}
            for i, (a, s, f, p) in enumerate(zip(archs, scores, costs["flops"], costs["params"]))]
    write_rows(rows, space, args.out)
    best = max(rows, key=lambda r: r["bn_score"])
    print(f"scored {len(rows):,} architectures of {space.name} ({depth_rule} rule) in {seconds:.3f}s "
          f"({len(rows) / max(seconds, 1e-9):,.0f}/s); best bn_score {best['bn_score']:.4f}: {best['arch']}")
    print(f"wrote {args.out}")
    return 0
