"""A family defined outside the package plugs in with one ``register_family`` call and runs end to end.

The ``toy`` family below is one elastic conv (width and kernel choices) and a classifier, built
from raynas's own elastic layers and BN-indicator helpers. Registered once, its space files load,
cost, build a supernet, score with the BN indicator and export children like the built-in ones.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from torch import nn

import raynas.space._family as registry
from raynas.bpe.proxy import proxy_child_space
from raynas.bpe.proxy_setting import ProxySetting
from raynas.bpe.space import proxy_space
from raynas.cost import CostModel
from raynas.cost.columns import value_columns
from raynas.errors import ArchError, ConfigError, SpaceError
from raynas.estimate import BNIndicator, OpTable, score_direct
from raynas.estimate.bn_indicator import MEASURES, prefix_means, slot_gammas
from raynas.estimate.latency import child_signatures
from raynas.space import Arch, Family, SearchSpace, family, known_families, load_space, register_family
from raynas.space._family import Part
from raynas.space.dimension import Choice, Dimension
from raynas.space.reader import Node
from raynas.supernet import Supernet, build_supernet, load_child, save_child
from raynas.supernet.blocks import ConvBNAct
from raynas.supernet.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from tests.supernet.test_export import randomise_bn

TOY_YAML = """
family: toy
name: toy_test
width: [4, 6, 8]
kernel: [1, 3]
resolution: 8
"""


# --- the pure half: the space file ------------------------------------------------------------
@dataclass(frozen=True)
class ToySpec:
    """Parsed ``family: toy`` space file; keys look like ``w8k3``."""

    width: tuple[int, ...]
    kernel: tuple[int, ...]
    input_resolution: int

    @classmethod
    def parse(cls, root: Node) -> ToySpec:
        return cls(root.child("width").choices(), root.child("kernel").choices(odd=True),
                   root.get("resolution", 8).integer(minimum=4))

    def dimensions(self) -> tuple[Dimension, ...]:
        return Dimension("width", self.width, "width"), Dimension("kernel", self.kernel, "kernel")

    def resolution(self, arch: Arch) -> int:
        return self.input_resolution

    def format_key(self, arch: Arch) -> str:
        return f"w{arch['width']}k{arch['kernel']}"

    def parse_key(self, key: str) -> dict[str, Choice]:
        match = re.fullmatch(r"w(\d+)k(\d+)", key)
        if match is None:
            raise ArchError(f"a toy key looks like w8k3, got {key!r}")
        return {"width": int(match.group(1)), "kernel": int(match.group(2))}


# --- the torch half: supernet, cost, BN tables ------------------------------------------------
class ToyNet(nn.Module):
    """conv-BN-ReLU, global pooling, classifier: elastic layers in the supernet, plain ones in a child."""

    def __init__(self, conv: ConvBNAct, classifier: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(x).mean((2, 3)))


class ToySupernet(Supernet):
    def __init__(self, space: SearchSpace, num_classes: int, in_channels: int = 3, bn_layout: str = "private") -> None:
        super().__init__(space, num_classes, in_channels)
        self.spec: ToySpec = space.spec  # type: ignore[assignment]
        self.bn_layout = "private"
        width, kernel = self.spec.width[-1], self.spec.kernel[-1]
        conv = ConvBNAct(ElasticConv2d(in_channels, width, kernel), ElasticBatchNorm2d(width), "relu")
        self.net = ToyNet(conv, ElasticLinear(width, num_classes))

    def _apply_arch(self, arch: Arch) -> None:
        self.net.conv.conv.set_active(out_channels=int(arch["width"]), kernel_size=int(arch["kernel"]))

    def _reset_arch(self) -> None:
        self.net.conv.conv.reset_active()

    def _forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.net(x)

    def _export(self, arch: Arch) -> nn.Module:
        width = int(arch["width"])
        conv = ConvBNAct(self.net.conv.conv.export(self.in_channels), self.net.conv.bn.export(width), "relu")
        return ToyNet(conv, self.net.classifier.export(width))


def toy_costs(space: SearchSpace, matrix: np.ndarray, num_classes: int, in_channels: int) -> tuple[np.ndarray, ...]:
    column = value_columns(space, matrix)
    width, kernel, size = column("width"), column("kernel"), space.spec.input_resolution  # type: ignore[attr-defined]
    conv = in_channels * width * kernel**2
    return conv * size**2 + width * num_classes, conv + 2 * width + width * num_classes + num_classes


def toy_tables(supernet: ToySupernet, measure: str, parameterless_score: float) -> dict[str, OpTable]:
    gammas = prefix_means(slot_gammas(supernet.net.conv.bn), measure, supernet.spec.width)
    return {"conv": OpTable(("width",), gammas[0])}


def toy_op_scores(supernet: ToySupernet, arch: Arch, measure: str, parameterless_score: float) -> list[float]:
    gamma = supernet.net.conv.bn.weight[0, : int(arch["width"])].detach().double().numpy()
    return [float(MEASURES[measure](gamma).mean())]


TOY = Family(
    name="toy",
    keys=("width", "kernel", "resolution"),
    parse=ToySpec.parse,
    supernet=f"{__name__}:ToySupernet",
    cost=lambda: toy_costs,  # a zero-argument loader works as well as an import path
    bn_tables=f"{__name__}:toy_tables",
    bn_walker=f"{__name__}:toy_op_scores",
)


# --- the tests --------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[Family]:
    """Register ``toy`` once, for this module only: the registry is process-wide, and other
    modules' tests list the known families."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_FAMILIES", registry._FAMILIES.copy())
        yield register_family(TOY)


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy_test.yaml"
    path.write_text(TOY_YAML)
    return path


@pytest.fixture(scope="module")
def toy(toy_file: Path) -> SearchSpace:
    return load_space(toy_file)


@pytest.fixture(scope="module")
def net(toy: SearchSpace) -> Supernet:
    supernet = build_supernet(toy, num_classes=5, in_channels=3, seed=1)
    randomise_bn(supernet, seed=2)
    return supernet.eval()


def test_a_toy_space_file_loads(toy):
    assert family("toy") is TOY and "toy" in known_families()
    assert toy.family == "toy" and toy.name == "toy_test" and len(toy) == 6
    assert toy.key(toy.arch("w6k3")) == "w6k3"


def test_a_toy_space_file_is_checked_by_its_parser(toy_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(toy_file.read_text().replace("kernel: [1, 3]", "kernel: [1, 2]"))
    with pytest.raises(SpaceError, match=r"bad.yaml: kernel: every choice must be odd, got \[1, 2\]"):
        load_space(bad)
    bad.write_text(toy_file.read_text() + "stages: []\n")
    with pytest.raises(SpaceError, match=r"unknown key\(s\) \['stages'\]"):
        load_space(bad)


def test_cost_model_counts_the_exported_childs_parameters(toy, net):
    archs = list(toy.enumerate())
    params = CostModel(toy, num_classes=5, in_channels=3).params(archs)
    assert params.tolist() == [sum(p.numel() for p in net.export(a).parameters()) for a in archs]


def test_bn_indicator_tables_equal_the_direct_walk(toy, net):
    archs = [toy.sample(random.Random(seed)) for seed in range(8)]
    scores = BNIndicator().fit(net).score(archs)
    assert scores == pytest.approx([score_direct(net, a) for a in archs])
    assert len(set(np.round(scores, 9))) > 1  # the randomised gammas tell widths apart


def test_an_exported_child_loads_back_and_matches_the_supernet(toy, net, tmp_path):
    arch = toy.arch({"width": 6, "kernel": 1})
    from tests.supernet.test_export import data_for

    folder = save_child(net, arch, tmp_path / "child", data_for(net))
    child, loaded_arch, loaded_space = load_child(folder)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(child(x), net(x, arch), atol=1e-5)
    assert loaded_arch == arch and loaded_space.family == "toy"


def test_parts_the_family_lacks_are_refused_naming_the_families_that_have_them(toy):
    with pytest.raises(ConfigError, match=r"no latency table for family 'toy'; known families: \['mobilenet', 'nb201'\]"):
        child_signatures(toy, toy.max())
    with pytest.raises(ConfigError, match=r"no width/resolution proxy for family 'toy'"):
        proxy_space(toy, width_multiplier=0.5)
    with pytest.raises(ConfigError, match=r"proxy supports nb201 spaces for now; space 'toy_test' is family 'toy'"):
        proxy_child_space(toy, ProxySetting())


def test_registration_is_once_per_name():
    assert register_family(TOY) is TOY  # the same record again: nothing changes
    with pytest.raises(SpaceError, match=r"family 'toy' is already registered"):
        register_family(replace(TOY, keys=("width",)))
    with pytest.raises(SpaceError, match=r"unknown family 'nope'; known families: \[.*'toy'.*\]"):
        family("nope")
    with pytest.raises(SpaceError, match=r"supernet must be 'package.module:attribute'"):
        replace(TOY, name="toy2", supernet="ToySupernet")


@pytest.mark.parametrize("name", ["mobilenet", "nb201"])
def test_every_part_of_a_built_in_family_resolves(name):
    """Import paths are only followed on first use: a renamed function must fail here, not in a run."""
    record = family(name)
    for part in get_args(Part):
        assert (record.load(part) is None) == (getattr(record, part) is None), part


def test_space_and_cost_model_import_without_torch():
    """Planning a search (load a space, cost children) needs neither torch nor ray: family parts load lazily."""
    probe = ("import sys; from raynas.space import load_space; from raynas.cost import CostModel; "
             "[CostModel(s).of(s.max()) for s in map(load_space, ('tiny', 'nb201'))]; "
             "assert 'torch' not in sys.modules and 'ray' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=Path(__file__).parents[2])
