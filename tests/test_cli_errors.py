"""Every bad input to the command line, one table row each.

A row is refused with exit code 2 and one line on stderr that names the file or value and the
rule; it leaves no file behind, and what can be refused before Ray starts never starts Ray.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from PIL import Image

from raynas.cli import main
from raynas.results import ResultStore
from raynas.results.report import write_run_metadata
from raynas.space import load_space
from raynas.supernet import build_supernet
from raynas.train import DataInfo, TrainConfig
from raynas.train.checkpoint import META_FILE, STATE_FILE, write_checkpoint

Maker = Callable[[Path, Path], Path]
"""(a fresh folder, the good checkpoint) -> the bad input it made there."""

DIGITS = DataInfo("digits", num_classes=10, in_channels=1, image_size=8, mean=(0.3054,), std=(0.3758,), hflip=False)
TINY_STAGE = "{width: [8], depth: [1], kernel: [3], expand: [1], stride: 1}"


@dataclass(frozen=True)
class Case:
    """argv and message may hold {ckpt} (a good checkpoint), {bad} (what ``make`` made) and {tmp}."""

    id: str
    argv: str
    message: str
    make: Maker | None = None


# --- makers of bad inputs ------------------------------------------------------------------
def file(name: str, content: bytes | str) -> Maker:
    def make(tmp: Path, ckpt: Path) -> Path:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    return make


def absent(name: str) -> Maker:
    return lambda tmp, ckpt: tmp / name


def damaged_checkpoint(damage: Callable[[Path], object]) -> Maker:
    """A copy of the good checkpoint with one file damaged by ``damage(folder)``."""

    def make(tmp: Path, ckpt: Path) -> Path:
        folder = shutil.copytree(ckpt, tmp / "checkpoint_epoch_0001")
        damage(folder)
        return folder

    return make


def truncate(folder: Path) -> None:
    state = folder / STATE_FILE
    state.write_bytes(state.read_bytes()[:1000])


def image_folder_with_truncated_jpeg(tmp: Path, ckpt: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp / "images" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp / "images" / name / f"{i}.jpg")
    broken = tmp / "images" / "b" / "1.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    return tmp / "images"


def run_with_corrupt_part(tmp: Path, ckpt: Path) -> Path:
    space = load_space("tiny")
    rows = [{"run_id": "r", "trial": i, "arch": space.sample(i), "status": "ok", "evaluator": "bn_score",
             "bn_score": float(i)} for i in range(3)]
    ResultStore(tmp / "run" / "results", space).write_batch(rows)
    write_run_metadata(tmp / "run", space)
    (tmp / "run" / "results" / "part-0-corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    return tmp / "run"


def space_file(body: str) -> Maker:
    return file("space.yaml", f"family: mobilenet\nresolution: [8]\n{body}")


# --- the table -------------------------------------------------------------------------------
SCORE = "score {ckpt} --out {tmp}/out.parquet"
SEARCH = "search {ckpt} --out {tmp}/search"
CALIBRATE = "calibrate {ckpt} --sample 2 --out {tmp}/out.parquet"
TRAIN = "train tiny --out {tmp}/runs"
STEM, HEAD = "stem: {width: [8]}\n", "head: {width: [16]}\n"
STAGES = f"stages: [{TINY_STAGE}]\n"

CASES = [
    # --archs files
    Case("archs-binary-csv", SCORE + " --archs {bad}", "{bad}: not a readable CSV file",
         file("archs.csv", bytes(range(256)) * 4)),
    Case("archs-not-parquet", SCORE + " --archs {bad}", "{bad}: not a readable Parquet file",
         file("archs.parquet", b"this is not parquet")),
    Case("archs-header-only", SCORE + " --archs {bad}", "{bad}: no architecture keys", file("archs.csv", "arch\n")),
    Case("archs-header-only-calibrate", "calibrate {ckpt} --archs {bad} --out {tmp}/out.parquet",
         "{bad}: no architecture keys", file("archs.csv", "arch\n")),
    Case("archs-no-arch-column", SCORE + " --archs {bad}", "{bad} has no `arch` column", file("archs.csv", "key\nx\n")),
    Case("archs-unknown-key", SCORE + " --archs {bad}", "{bad}: key 'bogus-key'", file("keys.txt", "bogus-key\n")),
    Case("archs-missing", SCORE + " --archs {bad}", "architecture file {bad} does not exist", absent("nope.csv")),
    # outputs and checkpoints of the wrong kind
    Case("score-out-csv", "score {ckpt} --sample 2 --out {tmp}/scores.csv", "score writes Parquet, to a folder", None),
    Case("checkpoint-is-a-file", "calibrate {bad} --sample 2 --out {tmp}/out.parquet",
         "{bad} is a file, not a raynas checkpoint: pass the checkpoint's folder", file("state.pt", b"\x80\x02")),
    # --config files
    Case("config-missing", TRAIN + " --config {bad}", "{bad}: no such file", absent("nope.yaml")),
    Case("config-yaml-syntax", TRAIN + " --config {bad}", "{bad}: malformed YAML at line 2, column 5",
         file("config.yaml", "epochs: 2\n  lr: 1\n")),
    Case("config-list", TRAIN + " --config {bad}", "{bad}: a training config must be a mapping",
         file("config.yaml", "- epochs\n- 2\n")),
    Case("config-wrong-type", TRAIN + " --config {bad}", "five", file("config.yaml", "epochs: five\n")),
    Case("config-unknown-key", TRAIN + " --config {bad}", "unknown training config key(s) ['epoch']",
         file("config.yaml", "epoch: 2\n")),
    # constraints
    Case("constraint-letter", SEARCH + " --constraint flops<=e", "finite number such as 2e8, got 'e' in 'flops<=e'"),
    Case("constraint-two-dots", SEARCH + " --constraint flops<=1.2.3", "got '1.2.3' in 'flops<=1.2.3'"),
    Case("constraint-overflow", SEARCH + " --constraint flops>=1e400", "got '1e400' in 'flops>=1e400'"),
    Case("constraint-shape", SEARCH + " --constraint flops=1", "constraint must look like 'flops<=2e8'"),
    Case("constraint-not-cheap", SEARCH + " --constraint bn_score>=1", "constraints apply to cheap objectives"),
    Case("constraint-unmet-run", "run --constraint flops<=1 --out {tmp}/run", "cannot be met"),
    Case("constraint-unmet-search", SEARCH + " --constraint flops<=1", "flops<=1"),
    # data
    Case("imagefolder-truncated-jpeg", TRAIN + " --data imagefolder:{bad}", "{bad}/b/1.jpg: cannot decode",
         image_folder_with_truncated_jpeg),
    Case("imagefolder-missing", TRAIN + " --data imagefolder:{bad}", "image folder {bad} does not exist",
         absent("nowhere")),
    Case("data-unknown", TRAIN + " --data mnist", "unknown dataset 'mnist'"),
    # numeric options
    Case("population-1", SEARCH + " --population 1", "argument --population: must be an integer >= 2, got 1"),
    Case("search-trials-0", SEARCH + " --trials 0", "argument --trials: must be an integer >= 1, got 0"),
    Case("search-batch-0", SEARCH + " --search-batch 0", "argument --search-batch: must be an integer >= 1, got 0"),
    Case("search-top-k-negative", SEARCH + " --top-k -1", "argument --top-k: must be an integer >= 0, got -1"),
    Case("search-calib-images-0", SEARCH + " --calib-images 0", "argument --calib-images: must be an integer >= 1"),
    Case("calib-images-0", CALIBRATE + " --calib-images 0", "argument --calib-images: must be an integer >= 1, got 0"),
    Case("actors-0", CALIBRATE + " --actors 0", "argument --actors: must be an integer >= 1, got 0"),
    Case("actor-cpus-0", CALIBRATE + " --actor-cpus 0", "argument --actor-cpus: must be a finite number > 0, got 0"),
    Case("sample-0", SCORE + " --sample 0", "argument --sample: must be an integer >= 1, got 0"),
    Case("train-epochs-0", TRAIN + " --epochs 0", "argument --epochs: must be an integer >= 1, got 0"),
    Case("train-batch-size-0", TRAIN + " --batch-size 0", "argument --batch-size: must be an integer >= 1, got 0"),
    Case("train-lr-negative", TRAIN + " --lr -1", "argument --lr: must be a finite number > 0, got -1"),
    Case("train-lr-nan", TRAIN + " --lr nan", "argument --lr: must be a finite number > 0, got nan"),
    Case("train-epochs-word", TRAIN + " --epochs two", "argument --epochs: must be an integer >= 1, got 'two'"),
    Case("train-workers-negative", TRAIN + " --workers -1", "argument --workers: must be an integer >= 0, got -1"),
    Case("train-max-failures-negative", TRAIN + " --max-failures -1", "--max-failures must be >= 0, got -1"),
    Case("retrain-train-images-0", "retrain tiny --arch x --train-images 0 --out {tmp}/runs",
         "argument --train-images: must be an integer >= 1, got 0"),
    Case("run-actors-0", "run --actors 0 --out {tmp}/run", "argument --actors: must be an integer >= 1, got 0"),
    Case("run-epochs-0", "run --epochs 0 --out {tmp}/run", "argument --epochs: must be an integer >= 1, got 0"),
    Case("export-calib-images-0", "export {ckpt} --arch x --calib-images 0 --out {tmp}/child",
         "argument --calib-images: must be an integer >= 1, got 0"),
    Case("export-top-k-0", "export {ckpt} --top-k 0 --from {tmp} --out {tmp}/child", "top-k must be >= 1, got 0"),
    Case("latency-repeats-0", "latency tiny --repeats 0 --out {tmp}/lat.json",
         "argument --repeats: must be an integer >= 1, got 0"),
    Case("latency-device-unknown", "latency tiny --device tpu --out {tmp}/lat.json",
         "device must be 'cpu' or 'cuda[:index]', got 'tpu'"),
    Case("latency-device-and-gpu", "latency tiny --device cpu --gpu --out {tmp}/lat.json",
         "argument --gpu: not allowed with argument --device"),
    Case("latency-amp-unknown", "latency tiny --amp fp8 --out {tmp}/lat.json", "argument --amp: invalid choice: 'fp8'"),
    *([] if torch.cuda.is_available() else [  # a machine without a GPU refuses it in one line
        Case("latency-device-cuda-absent", "latency tiny --device cuda --out {tmp}/lat.json",
             "device 'cuda' was asked for, but torch.cuda.is_available() is False"),
        Case("latency-gpu-absent", "latency tiny --gpu --out {tmp}/lat.json", "torch.cuda.is_available() is False"),
    ]),
    Case("bpe-rounds-0", "bpe {tmp}/bpe.yaml --reference {tmp}/ref.csv --out {tmp}/bpe --rounds 0",
         "argument --rounds: must be an integer >= 1, got 0"),
    Case("space-num-classes-0", "space tiny --num-classes 0", "argument --num-classes: must be an integer >= 1, got 0"),
    # results
    Case("report-corrupt-part", "report {bad}", "{bad}/results/part-0-corrupt.parquet: not a readable Parquet file",
         run_with_corrupt_part),
    Case("report-missing-dir", "report {bad}", "{bad}: no such run directory", absent("nowhere")),
    # space files
    Case("space-missing-stem", "space {bad}", "space.yaml: missing required key 'stem'", space_file(STAGES + HEAD)),
    Case("space-missing-head", "space {bad}", "space.yaml: missing required key 'head'", space_file(STEM + STAGES)),
    Case("space-stem-not-mapping", "space {bad}", "space.yaml: stem: must be a mapping",
         space_file("stem: 8\n" + STAGES + HEAD)),
    Case("space-unknown-key", "space {bad}", "space.yaml: stages[0]: unknown key(s) ['colour']",
         space_file(STEM + HEAD + "stages: [{width: [8], depth: [1], kernel: [3], expand: [1], stride: 1, colour: red}]\n")),
    Case("space-bad-choice", "space {bad}", "space.yaml: stages[0].depth: every choice must be >= 1, got [0]",
         space_file(STEM + HEAD + "stages: [{width: [8], depth: [0], kernel: [3], expand: [1], stride: 1}]\n")),
    Case("space-yaml-syntax", "space {bad}", "{bad}: malformed YAML at line", file("space.yaml", "family: [mobilenet\n")),
    Case("space-unknown-name", "space nope", "unknown space 'nope'"),
    # search choices
    Case("objective-unknown", SEARCH + " --objectives bn_score,speed", "unknown objective(s) ['speed']"),
    Case("sampler-unknown", SEARCH + " --sampler anneal", "anneal"),
    Case("arch-unknown", "export {ckpt} --arch r99-bogus --out {tmp}/child", "r99-bogus"),
    # checkpoints: every damage, under every command that reads a checkpoint
    *(Case(f"checkpoint-{damage}-{command}", argv.replace("{ckpt}", "{bad}"), "{bad}", damaged_checkpoint(fix))
      for damage, fix in [("truncated", truncate),
                          ("random-bytes", lambda f: (f / STATE_FILE).write_bytes(bytes(range(256)) * 8)),
                          ("missing-state", lambda f: (f / STATE_FILE).unlink()),
                          ("broken-json", lambda f: (f / META_FILE).write_text('{"epoch": 1, "space": '))]
      for command, argv in [("score", SCORE + " --all"), ("search", SEARCH), ("calibrate", CALIBRATE),
                            ("export", "export {ckpt} --arch x --out {tmp}/child")]),
]
CASES += [  # --prescreen
    Case("search-prescreen-0", SEARCH + " --prescreen 0", "argument --prescreen: must be an integer >= 1, got 0"),
    Case("search-prescreen-word", SEARCH + " --prescreen many",
         "argument --prescreen: must be an integer >= 1, got 'many'"),
    Case("search-prescreen-float", SEARCH + " --prescreen 1e6",
         "argument --prescreen: must be an integer >= 1, got '1e6'"),
    Case("search-prescreen-keep-negative", SEARCH + " --prescreen 10 --prescreen-keep -1",
         "argument --prescreen-keep: must be an integer >= 0, got -1"),
    Case("search-prescreen-keep-alone", SEARCH + " --prescreen-keep 5",
         "prescreen_keep=5 needs a prescreen: pass --prescreen N"),
    Case("search-prescreen-no-lookup", SEARCH + " --objectives accuracy --prescreen 10",
         "--prescreen needs a table-lookup objective (bn_score, flops, params, latency_ms), "
         "got objectives ['accuracy']"),
]


# --- fixtures and the test -----------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny supernet, written as training writes it: no Ray, a second to make."""
    space = load_space("tiny")
    supernet = build_supernet(space, num_classes=10, in_channels=1, seed=0)
    meta = {"format": "raynas-checkpoint/1", "run_name": "errors", "epoch": 1, "space": space.definition,
            "space_name": space.name, "config": TrainConfig().to_dict(), "data": DIGITS.to_dict(), "metrics": []}
    folder = tmp_path_factory.mktemp("errors") / "errors" / "checkpoint_epoch_0001"
    return write_checkpoint(folder, {"model": supernet.state_dict()}, meta)


@pytest.fixture
def no_ray():
    """Fail a case that started Ray, and stop that Ray so the next case starts clean."""
    ray.shutdown()  # a Ray left running by an earlier test module is not this case's doing
    yield
    started = ray.is_initialized()
    ray.shutdown()
    assert not started, "Ray was started for input that can be refused before it"


def exit_code(argv: list[str]) -> int | str | None:
    """main's return value, or argparse's exit code (it exits on a bad option)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_naming_it(case, checkpoint, tmp_path, capsys, no_ray):
    bad = case.make(tmp_path, checkpoint) if case.make else None
    names = {"ckpt": checkpoint, "bad": bad, "tmp": tmp_path}
    before = files_under(tmp_path)
    code = exit_code([arg.format(**names) for arg in case.argv.split()])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"raynas {case.argv.split()[0]}: error: "), err
    assert case.message.format(**names) in lines[0]
    assert files_under(tmp_path) == before, "a refused command must write nothing"
