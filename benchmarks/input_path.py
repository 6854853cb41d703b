"""Input paths on CIFAR-10-sized data: decoded once in memory against streamed through Ray Data.

    python -m benchmarks.input_path                       # 4,000 CIFAR-10 JPEGs, 2 epochs, 1 worker
    python -m benchmarks.input_path --images 8000 --workers 2 --cpus 4

Both paths train the same supernet on the same images, in the same batches (an image folder
streams in the in-memory path's order). Reported per path: the seconds to open the data (memory:
decode every image in the driver; stream: list the files, decode the statistics sample), each
epoch's images/s as the training loop measures them (the first epoch of the stream also starts
Ray Data's decode workers), and the wall time of the whole call. The ``input="auto"`` rule in
``raynas.data.streaming`` is set from this table.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import ray

from benchmarks.common import CIFAR_DIR, OUT, cifar_spec, table, write_json
from raynas.data import open_data
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, train_supernet


def subset_folder(images: int, out: Path) -> str:
    """An ImageFolder of the first ``images`` / 10 CIFAR-10 training images per class (links, not copies)."""
    cifar_spec()  # extracts the tree once
    classes = sorted(p.name for p in (CIFAR_DIR / "train").iterdir() if p.is_dir())
    for split, count in (("train", images // len(classes)), ("test", 100)):
        for name in classes:
            folder = out / split / name
            folder.mkdir(parents=True)
            for file in sorted((CIFAR_DIR / split / name).iterdir())[:count]:
                (folder / file.name).symlink_to(file)
    return f"imagefolder:{out}"


def measure(space, spec: str, input: str, args: argparse.Namespace) -> dict:
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.1, log_every_epoch=False)
    started = time.perf_counter()
    data = open_data(spec, seed=0, input=input)
    opened = time.perf_counter() - started
    result = train_supernet(space, data, config, Scaling(num_workers=args.workers), out_dir=OUT / "input_path_runs",
                            name=f"{input}-{int(time.time())}", input=input)
    row = {"input": input, "train_images": len(data.train), "open_s": opened,
           "total_s": time.perf_counter() - started}
    for metrics in result.metrics:
        row[f"epoch{metrics['epoch']}_img_s"] = metrics["images_per_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="training-pool images (a tenth per class)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers (0: the loop runs in the driver)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--space", default="tiny")
    args = parser.parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    folder = Path(tempfile.mkdtemp(prefix="input_path_"))
    try:
        spec = subset_folder(args.images, folder)
        rows = [measure(load_space(args.space), spec, input, args) for input in ("memory", "stream")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    columns = ["input", "train_images", "open_s", *[f"epoch{e + 1}_img_s" for e in range(args.epochs)], "total_s"]
    print(table(rows, columns))
    path = write_json("input_path", {"args": vars(args), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
