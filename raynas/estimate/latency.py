"""Latency as an objective: a per-block lookup table measured on the machine that runs the search.

A child's ``latency_ms`` is the sum of the measured latencies of its parts (the LUT approach of
ProxylessNAS and once-for-all: Cai et al., ICLR 2019 and ICLR 2020). Measuring every child is far
too slow for a search; measuring every distinct *block configuration* once is cheap, because a
child's parts repeat across millions of children.

A part is identified by its **signature**, a tuple of the values that decide its computation,
with the feature-map size at its input (so image resolutions that reach the same size share
entries):

- MobileNet: ``("stem", width, resolution)``,
  ``("block", stage, in_channels, out_channels, kernel, expand, size, stride)`` and
  ``("head", in_channels, head_width, size)``. The stage stands for its activation and SE; the
  block's position inside the stage is left out because it changes nothing but stride and
  in-channels, which are already in the signature.
- NAS-Bench-201: ``("stem", channels, resolution)``, ``("reduction", c_in, c_out, size)``,
  ``("head", channels, size)`` and ``("cell_op", stage, op, channels, size)``. A cell op's entry
  is a cell with that op on all six edges, divided by six, so the node sums are shared out
  among the edges; a child adds one entry per edge per cell.

One vectorised walk per family (``LatencyParts``, registered as ``Family.latency``; mirroring
``raynas.cost``) gives every row of an index matrix its signatures. ``LatencyTable.predict``
looks them up, and ``measure_latency_table`` runs the same walk over a small covering matrix
to find the configurations to measure, so the two cannot disagree about what exists.

Noise. Entries are timed in ``rounds`` interleaved passes over the whole table; in each pass an
entry gets ``warmup`` untimed calls and the median of ``repeats / rounds`` timed single calls,
and the entry keeps the quietest pass (``interleaved_latency_ms`` says why). Everything runs
with the garbage collector paused, in ``torch.inference_mode()`` and eval mode, at batch size 1
by default. End-to-end validation times whole children the same way. CPU timings depend on the
torch thread count, so it is part of the device key; ``num_threads(1)`` pins it, which is the
most stable choice on a small shared machine: with one thread a call is timed by the thread's
CPU clock, which does not count the time other processes took (``clock_name``). On a GPU
every call is timed with CUDA events recorded around it, after the warm-up calls and a
``torch.cuda.synchronize()``, and the events are read after one more synchronise; a per-block
sum over-counts launch gaps that a whole network overlaps, so expect a GPU table to
over-predict small children.

Precision. ``amp="bf16"`` times every call under ``torch.autocast(dtype=torch.bfloat16)`` and
``channels_last=True`` converts probes and inputs to the channels-last memory format; both
change latency, so both are part of the device key ("cuda-NVIDIA_H200-bf16-cl") and tables of
different precisions never mix.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import hashlib
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from raynas.cost import CostModel
from raynas.cost.columns import value_columns
from raynas.errors import ConfigError, RaynasError
from raynas.estimate.device import resolve_device
from raynas.space import Arch, SearchSpace
from raynas.space._family import family_part
from raynas.space.families.mobilenet import MobileNetSpec, StageSpec
from raynas.space.families.nb201 import EDGES, NB201Spec, edge_name
from raynas.supernet.blocks import ClassifierHead, ConvBNAct, InvertedResidual, SqueezeExcite, se_channels
from raynas.supernet.nb201 import Cell, NB201Child, ResNetReduction

Signature = tuple[str | int, ...]
TABLE_FORMAT = "raynas-latency-table/1"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "raynas" / "latency"
DEFAULT_REPEATS = 40
"""Timed calls per entry, spread over ``DEFAULT_ROUNDS`` passes."""
DEFAULT_WARMUP = 2
"""Untimed calls before each pass of an entry."""
DEFAULT_ROUNDS = 8
"""Interleaved passes over all entries (see ``interleaved_latency_ms``)."""
AMP_MODES = ("off", "bf16")
"""``amp``: "off" times float32 calls, "bf16" calls under ``torch.autocast(dtype=torch.bfloat16)``."""


class MissingLatencyEntryError(RaynasError, LookupError):
    """A child needs a block configuration that the latency table was not measured for."""


# --- devices and threads ------------------------------------------------------------------------
def check_precision(amp: str, channels_last: bool) -> None:
    """Raise ``ConfigError`` naming the valid values when ``amp`` or ``channels_last`` is unknown."""
    if amp not in AMP_MODES:
        raise ConfigError(f"amp must be one of {list(AMP_MODES)}, got {amp!r}")
    if not isinstance(channels_last, bool):
        raise ConfigError(f"channels_last must be true or false, got {channels_last!r}")


def _precision_suffix(amp: str, channels_last: bool) -> str:
    """The device-key suffix: empty for float32 in the default memory format, else "-bf16", "-cl"."""
    check_precision(amp, channels_last)
    return ("" if amp == "off" else f"-{amp}") + ("-cl" if channels_last else "")


def sanitise(text: str) -> str:
    """``text`` with every run of characters outside [A-Za-z0-9._-] replaced by one '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unknown"


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` reports."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def device_key(device: str | torch.device = "cpu", amp: str = "off", channels_last: bool = False) -> str:
    """A filename-safe name for the hardware and precision a table is valid on.

    "cpu-<model>-t<torch threads>" or "cuda-<gpu name>", then "-bf16" and "-cl" when measured
    that way: the thread count changes CPU latency as much as the model does, and precision and
    memory format change it on any device, so tables measured differently never mix.
    """
    dev = resolve_device(device)
    suffix = _precision_suffix(amp, channels_last)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return sanitise(f"cuda-{torch.cuda.get_device_name(index)}{suffix}")
    return sanitise(f"cpu-{cpu_model()}-t{torch.get_num_threads()}{suffix}")


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restored on exit; None changes nothing."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- timing --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A collection in the middle of a timed call is noise, as in ``timeit``."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_counts(repeats: int, warmup: int, rounds: int, batch_size: int) -> None:
    if repeats < 1 or warmup < 0 or rounds < 1 or batch_size < 1:
        raise ConfigError(
            f"repeats >= 1, warmup >= 0, rounds >= 1 and batch_size >= 1 must hold, got "
            f"(repeats={repeats}, warmup={warmup}, rounds={rounds}, batch_size={batch_size})"
        )


def clock_name(device: torch.device) -> str:
    """How calls on ``device`` are timed: "cuda_events", "thread_cpu" or "wall".

    With one torch thread every CPU op runs on the calling thread, so that thread's CPU time is
    the call's latency minus the time the scheduler gave to other processes: on a shared
    machine it is far steadier than the wall clock (on a quiet one they agree). With more
    threads the work spreads over a pool that the calling thread's clock does not see, so the
    wall clock is used.
    """
    if device.type == "cuda":
        return "cuda_events"
    return "thread_cpu" if torch.get_num_threads() == 1 else "wall"


def _call_times_ms(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int) -> list[float]:
    """Time of each call (see ``clock_name``); CUDA events are read after one sync at the end."""
    clock = clock_name(x.device)
    if clock == "cuda_events":
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in pairs:
            start.record()
            fn(x)
            end.record()
        torch.cuda.synchronize(x.device)
        return [start.elapsed_time(end) for start, end in pairs]
    now = time.thread_time_ns if clock == "thread_cpu" else time.perf_counter_ns
    times = []
    for _ in range(repeats):
        start_ns = now()
        fn(x)
        times.append((now() - start_ns) / 1e6)
    return times


def _timed_calls_ms(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int, warmup: int) -> list[float]:
    """``warmup`` untimed calls, then ``repeats`` timed ones, without autograd or collections."""
    with torch.inference_mode(), _gc_paused():
        for _ in range(warmup):
            fn(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return _call_times_ms(fn, x, repeats)


Call = tuple[Callable[[torch.Tensor], Any], torch.Tensor]


def interleaved_latency_ms(
    make_call: Callable[[int], Call], n: int, repeats: int, warmup: int, rounds: int,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Latency (ms) of ``n`` calls, timed in ``rounds`` shuffled passes over all of them.

    Each pass times ``ceil(repeats / rounds)`` calls of each entry after ``warmup`` untimed ones
    and keeps their median, which drops single calls that another process interrupted. On a
    shared machine the noise also comes in phases: another process wakes up for seconds and
    slows everything down, never up. Timing each entry in one go would put a whole phase on a run
    of neighbouring entries; passes give every entry several phases, and the minimum over the
    passes keeps its quietest one. ``make_call(k)`` builds call ``k`` afresh in each pass, so
    only one probe is held at a time.
    """
    per_round = -(-repeats // rounds)
    best = np.full(n, np.inf)
    order = np.random.default_rng(0)
    for done in range(1, rounds + 1):
        for k in order.permutation(n).tolist():
            fn, x = make_call(k)
            best[k] = min(best[k], float(np.median(_timed_calls_ms(fn, x, per_round, warmup))))
        if progress is not None:
            progress(done, rounds)
    return best


def _random_input(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator).to(device)


def _prepared_call(module: nn.Module, shape: tuple[int, ...], device: torch.device, amp: str,
                   channels_last: bool) -> Call:
    """``module`` in eval mode on ``device`` with a seeded input, in the asked precision and format."""
    module = module.to(device).eval()
    x = _random_input(shape, device)
    if channels_last:
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if amp == "off":
        return module, x

    def autocast_call(inputs: torch.Tensor) -> Any:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return module(inputs)

    return autocast_call, x


def measure_children_ms(
    children: Sequence[nn.Module],
    resolutions: Sequence[int],
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 1,
    in_channels: int = 3,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    rounds: int = DEFAULT_ROUNDS,
    amp: str = "off",
    channels_last: bool = False,
) -> np.ndarray:
    """End-to-end latency (ms) of several whole children, timed in interleaved passes like a table.

    The ground truth that a table's predictions are validated against. Children are copied, so
    the caller's modules keep their device and train/eval mode.
    """
    _check_counts(repeats, warmup, rounds, batch_size)
    check_precision(amp, channels_last)
    if len(children) != len(resolutions):
        raise ConfigError(
            f"one resolution per child must be given, got {len(children)} children and {len(resolutions)} resolutions"
        )
    dev = resolve_device(device)
    calls = [
        _prepared_call(copy.deepcopy(child), (batch_size, in_channels, r, r), dev, amp, channels_last)
        for child, r in zip(children, resolutions)
    ]
    return interleaved_latency_ms(calls.__getitem__, len(calls), repeats, warmup, rounds)


def measure_end_to_end(
    child: nn.Module,
    resolution: int,
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 1,
    in_channels: int = 3,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    rounds: int = DEFAULT_ROUNDS,
    amp: str = "off",
    channels_last: bool = False,
) -> float:
    """End-to-end latency (ms) of one whole (exported) child; see ``measure_children_ms``."""
    times = measure_children_ms(
        [child], [resolution], device, batch_size=batch_size, in_channels=in_channels, repeats=repeats,
        warmup=warmup, rounds=rounds, amp=amp, channels_last=channels_last,
    )
    return float(times[0])


# --- parts: one vectorised walk per family --------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One position in every child: its signature columns per row, and whether it runs.

    Row ``r`` uses the entry ``signature(tuple(columns[r]))`` ``count`` times when ``active[r]``.
    """

    columns: np.ndarray  # (n, k) int64
    active: np.ndarray  # (n,) bool
    signature: Callable[[tuple[int, ...]], Signature]
    count: int = 1


@dataclass(frozen=True)
class Probe:
    """What to time for one signature: ``module(x)`` for x of (batch, channels, size, size).

    The entry is the measured time divided by ``share`` (an NB201 cell probe runs six edges).
    """

    module: nn.Module
    channels: int
    size: int
    share: int = 1


def _conv_out(size: np.ndarray | int, stride: int) -> Any:
    """Output size of a padded conv (kernel k, padding k // 2) with this stride."""
    return (size - 1) // stride + 1


def _with(prefix: tuple[str | int, ...], suffix: tuple[int, ...] = ()) -> Callable[[tuple[int, ...]], Signature]:
    """A signature maker: ``prefix + row + suffix``."""
    return lambda row: (*prefix, *row, *suffix)


def _mobilenet_parts(space: SearchSpace, matrix: np.ndarray) -> list[Part]:
    """Stem, every block position and head; mirrors ``raynas.cost.mobilenet.mobilenet_costs``."""
    spec: MobileNetSpec = space.spec  # type: ignore[assignment]
    column = value_columns(space, matrix)
    every = np.ones(len(matrix), dtype=bool)
    size = column("resolution")
    width_in = column("stem_width")
    parts = [Part(np.stack([width_in, size], axis=1), every, _with(("stem",)))]
    size = _conv_out(size, spec.stem.stride)
    for i, stage in enumerate(spec.stages):
        width, depth = column(f"s{i}_width"), column(f"s{i}_depth")
        for j in range(stage.max_depth):
            stride = stage.stride if j == 0 else 1
            kernel, expand = column(f"s{i}_b{j}_kernel"), column(f"s{i}_b{j}_expand")
            columns = np.stack([width_in, width, kernel, expand, size], axis=1)
            parts.append(Part(columns, depth > j, _with(("block", i), (stride,))))
            size = _conv_out(size, stride)
            width_in = width
    parts.append(Part(np.stack([width_in, column("head_width"), size], axis=1), every, _with(("head",))))
    return parts


def _nb201_parts(space: SearchSpace, matrix: np.ndarray) -> list[Part]:
    """Stem, reductions and head (fixed), and each edge of each stage's cells (the op choice)."""
    spec: NB201Spec = space.spec  # type: ignore[assignment]
    n, c, size = len(matrix), spec.channels, spec.input_resolution
    every = np.ones(n, dtype=bool)
    fixed = np.zeros((n, 0), dtype=np.int64)
    parts = [Part(fixed, every, _with(("stem", c, size)))]
    for stage in range(3):
        width = c * 2**stage
        if stage > 0:
            parts.append(Part(fixed, every, _with(("reduction", width // 2, width, size))))
            size = _conv_out(size, 2)
        op_name = functools.partial(_nb201_op_signature, spec.ops, stage, width, size)
        for col in range(len(EDGES)):
            parts.append(Part(matrix[:, col : col + 1].astype(np.int64), every, op_name, spec.cells_per_stage))
    parts.append(Part(fixed, every, _with(("head", 4 * c, size))))
    return parts


def _nb201_op_signature(ops: tuple[str, ...], stage: int, width: int, size: int, row: tuple[int, ...]) -> Signature:
    return ("cell_op", stage, str(ops[row[0]]), width, size)


# --- covering matrices: every reachable signature in a few rows ----------------------------------
def _check_resolutions(space: SearchSpace, choices: Sequence[int], resolutions: Sequence[int] | None) -> list[int]:
    """The resolutions to measure: all of the space's by default, else a validated subset."""
    if resolutions is None:
        return list(choices)
    wrong = [r for r in resolutions if r not in choices]
    if wrong or not resolutions:
        raise ConfigError(
            f"resolutions must be a non-empty subset of {list(choices)} (the resolutions of space {space.name!r}), "
            f"got {list(resolutions)}"
        )
    return sorted(set(resolutions), key=list(choices).index)


def _mobilenet_cover(space: SearchSpace, resolutions: Sequence[int] | None) -> np.ndarray:
    """Rows that reach every (in, out, kernel, expand, size) of every block position.

    A block's in/out widths come from two neighbouring width dimensions, so each neighbouring
    pair is varied jointly (the others stay at their first choice); every block takes the same
    (kernel, expand) choice index, clipped per stage; depths are at their maximum so every block
    runs. That is sum(|pair|) x |resolutions| x |kernels| x |expands| rows, not a full product.
    """
    spec: MobileNetSpec = space.spec  # type: ignore[assignment]
    col = {name: i for i, name in enumerate(space.names)}
    res_dim = space.dim("resolution")
    res_index = [res_dim.choices.index(r) for r in _check_resolutions(space, [int(c) for c in res_dim.choices], resolutions)]
    widths = ["stem_width", *(f"s{i}_width" for i in range(len(spec.stages))), "head_width"]
    n_kernel = max(len(s.kernel) for s in spec.stages)
    n_expand = max(len(s.expand) for s in spec.stages)
    base = np.zeros(len(space.names), dtype=np.int16)
    for i, stage in enumerate(spec.stages):
        base[col[f"s{i}_depth"]] = len(stage.depth) - 1
    rows = []
    for a, b in zip(widths, widths[1:]):
        for ia, ib, ir, ik, ie in np.ndindex(
            len(space.dim(a).choices), len(space.dim(b).choices), len(res_index), n_kernel, n_expand
        ):
            row = base.copy()
            row[[col[a], col[b], col["resolution"]]] = ia, ib, res_index[ir]
            _set_block_choices(row, col, spec.stages, ik, ie)
            rows.append(row)
    return np.unique(np.stack(rows), axis=0)


def _set_block_choices(row: np.ndarray, col: dict[str, int], stages: Sequence[StageSpec], ik: int, ie: int) -> None:
    for i, stage in enumerate(stages):
        for j in range(stage.max_depth):
            row[col[f"s{i}_b{j}_kernel"]] = min(ik, len(stage.kernel) - 1)
            row[col[f"s{i}_b{j}_expand"]] = min(ie, len(stage.expand) - 1)


def _nb201_cover(space: SearchSpace, resolutions: Sequence[int] | None) -> np.ndarray:
    """One row per op, that op on every edge: reaches every (stage, op)."""
    spec: NB201Spec = space.spec  # type: ignore[assignment]
    _check_resolutions(space, [spec.input_resolution], resolutions)
    return np.repeat(np.arange(len(spec.ops), dtype=np.int16)[:, None], len(space.names), axis=1)


# --- probes: the static module behind each signature ---------------------------------------------
def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, act: str, groups: int = 1) -> ConvBNAct:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    return ConvBNAct(conv, nn.BatchNorm2d(c_out), act)


def _static_block(stage: StageSpec, c_in: int, c_out: int, kernel: int, expand: int, stride: int) -> InvertedResidual:
    """The block ``MobileNetSupernet`` exports for this setting (tests check the two agree)."""
    has_expand = stage.expand[-1] > 1
    mid = c_in * expand if has_expand else c_in
    expand_layer = _conv_bn(c_in, mid, 1, 1, stage.act) if has_expand else None
    depthwise = _conv_bn(mid, mid, kernel, stride, stage.act, groups=mid)
    se = None
    if stage.se:
        reduced = se_channels(mid)
        se = SqueezeExcite(nn.Conv2d(mid, reduced, 1, bias=True), nn.Conv2d(reduced, mid, 1, bias=True))
    return InvertedResidual(expand_layer, depthwise, se, _conv_bn(mid, c_out, 1, 1, "none"), stride)


def _static_head(spec: MobileNetSpec, c_in: int, width: int, num_classes: int) -> ClassifierHead:
    mix = None if spec.head.mix_width is None else nn.Linear(width, spec.head.mix_width, bias=False)
    features = width if mix is None else mix.out_features
    conv = _conv_bn(c_in, width, 1, 1, spec.head.act)
    return ClassifierHead(conv, mix, spec.head.act, spec.dropout, nn.Linear(features, num_classes))


def _mobilenet_probe(space: SearchSpace, sig: Signature, num_classes: int, in_channels: int) -> Probe:
    spec: MobileNetSpec = space.spec  # type: ignore[assignment]
    kind, *values = sig
    if kind == "stem":
        width, size = values
        return Probe(_conv_bn(in_channels, int(width), 3, spec.stem.stride, spec.stem.act), in_channels, int(size))
    if kind == "block":
        stage, c_in, c_out, kernel, expand, size, stride = (int(v) for v in values)
        return Probe(_static_block(spec.stages[stage], c_in, c_out, kernel, expand, stride), c_in, size)
    if kind == "head":
        c_in, width, size = (int(v) for v in values)
        return Probe(_static_head(spec, c_in, width, num_classes), c_in, size)
    raise ConfigError(f"unknown MobileNet signature kind {kind!r} in {sig}; known: stem, block, head")


class _CellProbe(nn.Module):
    """A cell with one op choice on every edge (``Cell.forward`` takes the ops explicitly)."""

    def __init__(self, cell: Cell, ops: dict[str, str]) -> None:
        super().__init__()
        self.cell = cell
        self.ops = ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(x, self.ops)


class _NB201Head(nn.Module):
    """The tail of ``NB201Network.run``: BN-ReLU, global pooling, classifier."""

    def __init__(self, last_act: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.last_act = last_act
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.last_act(x).mean((2, 3)))


def _nb201_stages(child: NB201Child) -> tuple[dict[int, ResNetReduction], list[Cell]]:
    """The child's reductions by out-channels, and the first cell of each stage."""
    reductions: dict[int, ResNetReduction] = {}
    first_cells: list[Cell] = []
    previous: nn.Module | None = None
    for layer in child.layers:
        if isinstance(layer, ResNetReduction):
            reductions[cast(nn.Conv2d, layer.conv_b[1]).out_channels] = layer
        elif isinstance(layer, Cell) and not isinstance(previous, Cell):
            first_cells.append(layer)
        previous = layer
    return reductions, first_cells


def _nb201_probe(space: SearchSpace, sig: Signature, num_classes: int, in_channels: int) -> Probe:
    """Modules cut from a real ``NB201Child`` with one op on every edge, so they cannot drift."""
    spec: NB201Spec = space.spec  # type: ignore[assignment]
    kind = sig[0]
    op = str(sig[2]) if kind == "cell_op" else str(spec.ops[0])
    ops = {edge_name(i, j): op for i, j in EDGES}
    child = NB201Child(spec, num_classes, in_channels, ops)
    reductions, first_cells = _nb201_stages(child)
    if kind == "stem":
        return Probe(child.stem, in_channels, int(sig[2]))
    if kind == "reduction":
        c_in, c_out, size = (int(v) for v in sig[1:])
        return Probe(reductions[c_out], c_in, size)
    if kind == "cell_op":
        stage, width, size = int(sig[1]), int(sig[3]), int(sig[4])
        return Probe(_CellProbe(first_cells[stage], ops), width, size, share=len(EDGES))
    if kind == "head":
        return Probe(_NB201Head(child.last_act, child.classifier), int(sig[1]), int(sig[2]))
    raise ConfigError(f"unknown NAS-Bench-201 signature kind {kind!r} in {sig}; known: stem, reduction, cell_op, head")


@dataclass(frozen=True)
class LatencyParts:
    """A family's latency walk (``Family.latency``): the signatures of every row of an index
    matrix, a covering matrix that reaches every signature, and the static module behind one."""

    parts: Callable[[SearchSpace, np.ndarray], list[Part]]
    cover: Callable[[SearchSpace, Sequence[int] | None], np.ndarray]
    probe: Callable[[SearchSpace, Signature, int, int], Probe]


MOBILENET_LATENCY = LatencyParts(_mobilenet_parts, _mobilenet_cover, _mobilenet_probe)
NB201_LATENCY = LatencyParts(_nb201_parts, _nb201_cover, _nb201_probe)


def latency_parts(space: SearchSpace) -> LatencyParts:
    """The latency walk of the space's family; a family without one lists those that have one."""
    parts: LatencyParts = family_part(space.family, "latency", "latency table")
    return parts


def _as_matrix(space: SearchSpace, archs: Sequence[Arch] | np.ndarray) -> np.ndarray:
    return archs if isinstance(archs, np.ndarray) else space.index_matrix(list(archs))


# --- signatures ------------------------------------------------------------------------------------
def child_signatures(space: SearchSpace, arch: Arch) -> list[Signature]:
    """The entries a child's latency sums, one per part instance (an NB201 op once per cell)."""
    out: list[Signature] = []
    for part in latency_parts(space).parts(space, space.index_matrix([arch])):
        if part.active[0]:
            out.extend([part.signature(tuple(int(v) for v in part.columns[0]))] * part.count)
    return out


def table_signatures(space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[Signature]:
    """Every distinct signature of the space's children (at these resolutions), in a stable order."""
    walk = latency_parts(space)
    cover = walk.cover(space, resolutions)
    found: set[Signature] = set()
    for part in walk.parts(space, cover):
        for row in np.unique(part.columns[part.active], axis=0).tolist():
            found.add(part.signature(tuple(row)))
    return sorted(found, key=lambda sig: tuple((isinstance(v, str), v) for v in sig))


def space_digest(space: SearchSpace) -> str:
    """A short hash of the space definition: a cached table of an edited space file is stale."""
    text = json.dumps(space.definition or {"name": space.name, "family": space.family}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the table -------------------------------------------------------------------------------------
@dataclass
class LatencyTable:
    """Measured latency (ms) per block signature of one space on one device.

    ``predict`` sums a child's entries; a missing entry is an error that names the signature
    and the command that measures it, never a silent zero.
    """

    device_key: str
    space: str
    entries: dict[Signature, float]
    batch_size: int = 1
    num_classes: int = 10
    in_channels: int = 3
    resolutions: tuple[int, ...] = ()
    space_digest: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(self, space: SearchSpace, archs: Sequence[Arch] | np.ndarray) -> np.ndarray:
        """Latency in ms of each architecture (Archs or an index matrix), vectorised per part."""
        if space.name != self.space:
            raise ConfigError(f"this latency table was measured for space {self.space!r}, not {space.name!r}")
        matrix = _as_matrix(space, archs)
        total = np.zeros(len(matrix), dtype=np.float64)
        for part in latency_parts(space).parts(space, matrix):
            rows = np.flatnonzero(part.active)
            if rows.size:
                total[rows] += part.count * self._part_ms(space, matrix, part, rows)
        return total

    def _part_ms(self, space: SearchSpace, matrix: np.ndarray, part: Part, rows: np.ndarray) -> np.ndarray:
        """The entry of ``part`` for each of ``rows``: one dict lookup per distinct signature."""
        unique, inverse = np.unique(part.columns[rows], axis=0, return_inverse=True)
        inverse = inverse.ravel()
        signatures = [part.signature(tuple(row)) for row in unique.tolist()]
        for k, sig in enumerate(signatures):
            if sig not in self.entries:
                example = space.from_index_matrix(matrix[rows[inverse == k][:1]])[0]
                raise MissingLatencyEntryError(self._missing_message(space, sig, example))
        return np.array([self.entries[sig] for sig in signatures])[inverse]

    def _missing_message(self, space: SearchSpace, sig: Signature, example: Arch) -> str:
        res = space.resolution(example)
        return (
            f"latency table {self.space}/{self.device_key} has no entry for block {sig}, needed by child "
            f"{space.key(example)} (resolution {res}; the table covers resolutions {list(self.resolutions)}). "
            f"Measure it on this device with `raynas latency {space.name} --resolution {res} --out TABLE.json` "
            f"or `measure_latency_table(space, resolutions=[{res}])`"
        )

    # --- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a signature becomes a list, and JSON lists come back as the same tuple."""
        return {
            "format": TABLE_FORMAT, "device_key": self.device_key, "space": self.space,
            "batch_size": self.batch_size, "num_classes": self.num_classes, "in_channels": self.in_channels,
            "resolutions": list(self.resolutions), "space_digest": self.space_digest, "meta": self.meta,
            "entries": [{"signature": list(sig), "ms": ms} for sig, ms in self.entries.items()],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "LatencyTable":
        """Inverse of ``to_dict``; a file of another kind or version is a clear error."""
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"{source}: not a latency table: format must be {TABLE_FORMAT!r}, got {found!r}")
        try:
            entries = {tuple(e["signature"]): float(e["ms"]) for e in data["entries"]}
            return cls(
                device_key=str(data["device_key"]), space=str(data["space"]), entries=entries,
                batch_size=int(data["batch_size"]), num_classes=int(data["num_classes"]),
                in_channels=int(data["in_channels"]), resolutions=tuple(int(r) for r in data["resolutions"]),
                space_digest=str(data.get("space_digest", "")), meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: malformed latency table ({type(err).__name__}: {err})") from err

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically (temp file + ``os.replace``): a reader never sees half a table."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(_table_json(self.to_dict()))
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "LatencyTable":
        """Read a table written by ``save``."""
        source = Path(path)
        try:
            data = json.loads(source.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{source}: cannot read latency table: {err}") from err
        return cls.from_dict(data, str(source))

    def serves(self, space: SearchSpace, batch_size: int, num_classes: int, in_channels: int,
               resolutions: Sequence[int]) -> bool:
        """True when this table was measured for exactly this setting and covers these resolutions."""
        return (
            self.space == space.name and self.space_digest == space_digest(space)
            and (self.batch_size, self.num_classes, self.in_channels) == (batch_size, num_classes, in_channels)
            and set(resolutions) <= set(self.resolutions)
        )


def _table_json(data: dict[str, Any]) -> str:
    """Indented JSON with one entry per line, so a table file reads (and diffs) as a table."""
    entries = data["entries"]
    head = json.dumps({**data, "entries": None}, indent=1)
    rows = ",\n".join("  " + json.dumps(entry) for entry in entries)
    return head.replace('"entries": null', '"entries": [\n' + rows + "\n ]") + "\n"


# --- measuring ---------------------------------------------------------------------------------------
def _space_resolutions(space: SearchSpace, resolutions: Sequence[int] | None) -> tuple[int, ...]:
    if "resolution" in space.names:
        return tuple(_check_resolutions(space, space.dim("resolution").choices, resolutions))  # type: ignore[arg-type]
    fixed = space.resolution(space.min())
    return tuple(_check_resolutions(space, [fixed], resolutions))


def measure_latency_table(
    space: SearchSpace,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    resolutions: Sequence[int] | None = None,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    rounds: int = DEFAULT_ROUNDS,
    progress: Callable[[int, int], None] | None = None,
    amp: str = "off",
    channels_last: bool = False,
) -> LatencyTable:
    """Measure every distinct block configuration of ``space`` on ``device``.

    ``resolutions`` restricts the input resolutions measured, which keeps large spaces
    (ofa_mbv3 has 25) cheap; children at other resolutions then raise a missing-entry error.
    Each entry takes ``repeats`` timed calls in ``rounds`` interleaved passes and keeps the
    median of its quietest pass (see ``interleaved_latency_ms``). The torch thread count is
    left as it is (wrap the call in ``num_threads(n)`` to pin it); it is part of the device key,
    and so are ``amp`` and ``channels_last`` (module docstring, "Precision").
    ``progress(done, rounds)`` is called after each pass.
    """
    _check_counts(repeats, warmup, rounds, batch_size)
    check_precision(amp, channels_last)
    dev = resolve_device(device)
    walk = latency_parts(space)
    measured_res = _space_resolutions(space, resolutions)
    signatures = table_signatures(space, resolutions)
    shares = [1] * len(signatures)

    def make_call(k: int) -> Call:
        probe = walk.probe(space, signatures[k], num_classes, in_channels)
        shares[k] = probe.share
        return _prepared_call(probe.module, (batch_size, probe.channels, probe.size, probe.size), dev, amp, channels_last)

    start = time.perf_counter()
    measured = interleaved_latency_ms(make_call, len(signatures), repeats, warmup, rounds, progress)
    meta = {
        "seconds": round(time.perf_counter() - start, 3), "repeats": repeats, "warmup": warmup, "rounds": rounds,
        "clock": clock_name(dev), "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(dev),
        "amp": amp, "channels_last": channels_last, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    entries = {sig: float(ms / share) for sig, ms, share in zip(signatures, measured, shares)}
    return LatencyTable(
        device_key(dev, amp, channels_last), space.name, entries, batch_size, num_classes, in_channels, measured_res,
        space_digest(space), meta,
    )


def cache_path(
    space: SearchSpace, device: str | torch.device = "cpu", cache_dir: str | os.PathLike[str] | None = None,
    amp: str = "off", channels_last: bool = False,
) -> Path:
    """``<cache_dir>/<space>-<device_key>.json``."""
    folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    return folder / f"{sanitise(space.name)}-{device_key(device, amp, channels_last)}.json"


def cached_latency_table(
    space: SearchSpace,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 1,
    resolutions: Sequence[int] | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    rounds: int = DEFAULT_ROUNDS,
    amp: str = "off",
    channels_last: bool = False,
) -> LatencyTable:
    """The cached table for this space, device and precision, measured and saved once if absent.

    A cached table is re-measured (and overwritten) when it was measured for another setting:
    batch size, classes, input channels, an edited space file, or fewer resolutions.
    """
    path = cache_path(space, device, cache_dir, amp, channels_last)
    wanted = _space_resolutions(space, resolutions)
    if path.is_file():
        table = LatencyTable.load(path)
        if table.serves(space, batch_size, num_classes, in_channels, wanted):
            return table
    table = measure_latency_table(
        space, device, batch_size, repeats, warmup, resolutions,
        num_classes=num_classes, in_channels=in_channels, rounds=rounds, amp=amp, channels_last=channels_last,
    )
    table.save(path)
    return table


# --- validation --------------------------------------------------------------------------------------
def flops_stratified_sample(space: SearchSpace, n: int, seed: int = 0, pool: int | None = None) -> list[Arch]:
    """``n`` children, one from each FLOPs quantile of a uniform pool.

    Uniform sampling piles children up around the mean FLOPs; one per quantile keeps the
    validation set spread like the space's own distribution, without repeats.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    size = pool if pool is not None else max(20 * n, 1000)
    matrix = np.unique(space.sample_index_matrix(size, seed=seed), axis=0)
    if len(matrix) < n:
        raise ConfigError(f"the pool holds {len(matrix)} distinct children, fewer than n={n}; pass a larger pool")
    order = np.argsort(CostModel(space).flops(matrix), kind="stable")
    rng = np.random.default_rng(seed)
    picks = [int(rng.choice(stratum)) for stratum in np.array_split(order, n)]
    return space.from_index_matrix(matrix[picks])
