"""Foundation figures: cost-model throughput and the largest export difference.

    python -m benchmarks.cost_model

Throughput: FLOPs and params of 1,000,000 sampled children per space, from an index matrix
(the vectorised path a search uses) and from a list of Arch objects. Export: for 50 random
children per shipped space, max |supernet(x, arch) - export(arch)(x)| in eval mode with
randomised BN statistics (reduced input resolution for the ImageNet spaces).
"""

from __future__ import annotations

import random
import time

import torch

from benchmarks.common import table, write_json
from raynas.cost import CostModel
from raynas.space import load_space, shipped_spaces
from raynas.supernet import BATCHNORMS, build_supernet

REDUCED = {"bignas_imagenet": 48, "ofa_mbv3": 48}


def throughput(name: str) -> dict:
    space = load_space(name)
    cost = CostModel(space)
    matrix = space.sample_index_matrix(1_000_000, seed=0)
    started = time.perf_counter()
    cost.costs(matrix)
    vectorised = 1_000_000 / (time.perf_counter() - started)
    archs = space.from_index_matrix(matrix[:50_000])
    started = time.perf_counter()
    cost.costs(archs)
    from_archs = 50_000 / (time.perf_counter() - started)
    return {"space": name, "archs_per_s_matrix": vectorised, "archs_per_s_arch_list": from_archs}


def export_difference(name: str, n: int = 50) -> float:
    space = load_space(name)
    net = build_supernet(space, 10, seed=1)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, BATCHNORMS):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.5 + 1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    net.eval()
    rng = random.Random(0)
    worst = 0.0
    for _ in range(n):
        arch = space.sample(rng)
        size = REDUCED.get(name, space.resolution(arch))
        x = torch.randn(2, 3, size, size, generator=gen)
        with torch.no_grad():
            worst = max(worst, (net(x, arch) - net.export(arch).eval()(x)).abs().max().item())
    return worst


def main() -> None:
    rows = []
    for name in sorted(shipped_spaces()):
        rows.append({**throughput(name), "max_export_abs_diff": export_difference(name)})
    print("\ncost model throughput (1 process) and export equality (50 children per space)")
    print(table(rows, ["space", "archs_per_s_matrix", "archs_per_s_arch_list", "max_export_abs_diff"]))
    print(f"wrote {write_json('cost_model', {'rows': rows})}")


if __name__ == "__main__":
    main()
