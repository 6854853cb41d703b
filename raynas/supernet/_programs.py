"""Self-contained programs of an exported child: TorchScript (``model.ts``) and ``torch.export`` (``model.pt2``).

Both wrap the preprocessing of ``raynas.data.to_model_input`` around the child, so a user who
has only torch feeds float images in [0, 1] (uint8 / 255), shaped (N, C, H, W) of any size, and
gets logits. The child is traced at its own resolution, which the wrapper always resizes to, so
the trace covers every input. Each program is checked against the eager child before it is
written.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

import torch
import torch.nn.functional as F
from torch import nn

from raynas.errors import ExportError

TORCHSCRIPT_FILE = "model.ts"
EXPORT_FILE = "model.pt2"
PROGRAM_FILES = (TORCHSCRIPT_FILE, EXPORT_FILE)
# Programs must agree with the eager child to this fraction of its largest logit (float32).
RTOL = 1e-5


class PreprocessedChild(nn.Module):
    """Images in [0, 1], (N, C, H, W) of any size -> logits: normalise, resize, run the child.

    The same operations in the same order as ``raynas.data.to_model_input`` (bilinear,
    antialias, align_corners=False); resizing to the size an image already has is the identity.
    """

    if TYPE_CHECKING:  # the buffers' types, for mypy only: TorchScript rejects class-level annotations here
        mean: torch.Tensor
        std: torch.Tensor

    def __init__(self, child: nn.Module, mean: Sequence[float], std: Sequence[float], resolution: int) -> None:
        super().__init__()
        self.child = child
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.resolution = int(resolution)
        self.in_channels = len(mean)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"images must be shaped (N, {self.in_channels}, H, W), got {list(images.shape)}")
        if not images.is_floating_point():
            raise ValueError("images must be float in [0, 1] (uint8 / 255), got a tensor of another dtype")
        x = (images.float() - self.mean) / self.std
        size = [self.resolution, self.resolution]
        return self.child(F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True))


Saver = Callable[[BinaryIO], None]


def build_programs(
    child: nn.Module, mean: Sequence[float], std: Sequence[float], resolution: int,
    extra_files: Mapping[str, str],
) -> dict[str, Saver]:
    """Compile ``child`` (eval, CPU) with its preprocessing; returns file name -> writer of that file.

    ``extra_files`` (name -> text) travel inside ``model.ts``, read back with
    ``torch.jit.load(path, _extra_files={name: ""})``.
    """
    wrapped = PreprocessedChild(child, mean, std, resolution).eval()
    example = torch.zeros(2, len(mean), resolution, resolution)
    with _quiet_compilers(), torch.no_grad():
        traced = torch.jit.trace(child, example, check_trace=False)
        scripted = torch.jit.script(PreprocessedChild(traced, mean, std, resolution).eval())
        exported = torch.export.export(wrapped, (example,), dynamic_shapes=(_dynamic_image_dims(),))
    _check_agreement(wrapped, {"TorchScript": scripted, "torch.export": exported.module()})
    files = dict(extra_files)

    def save_torchscript(f: BinaryIO) -> None:
        with _quiet_compilers():
            torch.jit.save(scripted, f, _extra_files=files)

    return {TORCHSCRIPT_FILE: save_torchscript, EXPORT_FILE: lambda f: torch.export.save(exported, f)}


def _dynamic_image_dims() -> dict[int, torch.export.Dim]:
    return {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=2),
            3: torch.export.Dim("width", min=2)}


def _check_agreement(
    reference: PreprocessedChild, programs: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]
) -> None:
    """Each program gives the eager logits, at the child's resolution and at another size."""
    gen = torch.Generator().manual_seed(0)
    size = reference.resolution
    inputs = [torch.rand(3, reference.in_channels, size, size, generator=gen),
              torch.rand(1, reference.in_channels, size + 5, size + 2, generator=gen)]
    with torch.no_grad():
        for x in inputs:
            expected = reference(x)
            for name, program in programs.items():
                got = program(x)
                worst = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
                if not worst <= RTOL * expected.abs().max().item():
                    raise ExportError(
                        f"the {name} program must reproduce the child within {RTOL} of its largest logit; "
                        f"on input {list(x.shape)} it gave shape {list(got.shape)}, max abs diff {worst}"
                    )


@contextmanager
def _quiet_compilers() -> Iterator[None]:
    """Hide torch.jit's deprecation notice and the tracer's static-shape warnings (the wrapper
    always feeds the traced resolution, and every program is checked against the eager child)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield

