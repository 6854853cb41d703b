"""Streamed training at scale: the driver's memory does not grow with the dataset, and images are
decoded on other nodes than the driver's.

Each measured run is its own Python process with its own local Ray instance under a private
``RAY_TMPDIR``, so one run's peak RSS says nothing of another's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import ray
from PIL import Image
from ray.cluster_utils import Cluster

from raynas.data.streaming import TRACE_ENV
from raynas.space import load_space
from raynas.train import Scaling, TrainConfig, load_checkpoint, train_supernet
from tests.cluster.test_multinode import end_processes_under, private_ray_tmpdir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIGITS_IMAGES = 1797

TRAIN_IN_A_PROCESS = textwrap.dedent("""
    import json, resource, sys
    import ray
    from raynas.space import load_space
    from raynas.train import Scaling, TrainConfig, train_supernet

    folder, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # 2 training workers, 2 CPUs to decode
    config = TrainConfig(epochs=1, batch_size=batch, lr=0.1, log_every_epoch=False)
    result = train_supernet(load_space("tiny"), "imagefolder:" + folder, config, Scaling(num_workers=2),
                            out_dir=out, name="rss", input="stream")
    now = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_after_mb": now / 1024, "steps": result.metrics[-1]["step"],
                      "loss_max": result.metrics[-1]["loss_max"]}))
""")


def write_jpegs(root: Path, count: int, classes: int = 10, size: int = 32, seed: int = 0) -> Path:
    """``count`` seeded 32x32 JPEGs in ``classes`` class folders (a class is a mean colour plus noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(40, 216, (classes, 1, 1, 3))
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        pixels = np.clip(centres[c] + rng.normal(0, 30, (count // classes, size, size, 3)), 0, 255).astype(np.uint8)
        for i, image in enumerate(pixels):
            Image.fromarray(image).save(folder / f"{i:05d}.jpg", quality=85)
    return root


def train_in_a_process(folder: Path, out: Path, batch: int) -> dict:
    ray_dir = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # short: Ray's sockets live under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_dir, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, "-c", TRAIN_IN_A_PROCESS, str(folder), str(out), str(batch)],
                              env=env, capture_output=True, text=True, timeout=420)
    finally:
        end_processes_under(ray_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_driver_memory_does_not_grow_with_the_streamed_dataset(tmp_path):
    big = write_jpegs(tmp_path / "big", 20_000)  # 11x digits
    small = write_jpegs(tmp_path / "small", DIGITS_IMAGES // 10)
    runs = {"small": train_in_a_process(small, tmp_path / "runs-small", batch=8),
            "big": train_in_a_process(big, tmp_path / "runs-big", batch=256)}
    print(f"driver peak RSS: {json.dumps(runs)}")
    assert runs["big"]["steps"] >= 20 and runs["small"]["steps"] >= 2
    assert all(np.isfinite(run["loss_max"]) for run in runs.values())
    assert runs["big"]["peak_rss_mb"] <= 1.10 * runs["small"]["peak_rss_mb"], runs


def test_images_are_decoded_on_another_node_than_the_drivers(tmp_path):
    folder = write_jpegs(tmp_path / "images", 600, classes=4, size=16)
    trace = tmp_path / "trace"
    trace.mkdir()
    with private_ray_tmpdir():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=2)
            # the driver has no CPU here and decodes its statistics sample itself: trace the workers only
            ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": {TRACE_ENV: str(trace)}})
            cluster.wait_for_nodes()
            driver_node = ray.get_runtime_context().get_node_id()
            config = TrainConfig(epochs=1, batch_size=32, lr=0.1, log_every_epoch=False)
            result = train_supernet(load_space("tiny"), f"imagefolder:{folder}", config, Scaling(num_workers=2),
                                    out_dir=tmp_path / "runs", name="remote", input="stream")
            decoded_on = {marker.name.split("-")[0] for marker in trace.iterdir()}
        finally:
            ray.shutdown()
            cluster.shutdown()
    assert load_checkpoint(result.checkpoint).epoch == 1
    assert np.isfinite(result.metrics[-1]["loss_max"])
    assert decoded_on and driver_node not in decoded_on, (driver_node, decoded_on)
