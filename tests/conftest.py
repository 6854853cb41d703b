"""Shared fixtures: the CIFAR-10 JPEG tree for slow tests, and one local Ray instance per module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

SHARED_CIFAR_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar"
CIFAR_CACHE = Path(os.environ.get("RAYNAS_CIFAR_DIR", Path.home() / ".cache" / "raynas" / "cifar10-jpeg"))

os.environ.pop("RAY_ADDRESS", None)  # never attach tests to a cluster that happens to be around


@pytest.fixture(scope="session")
def cifar_jpeg_root() -> Path:
    """The CIFAR-10 JPEG tree from ../shared/data, extracted once into a cache outside the repo."""
    if (CIFAR_CACHE / "train").is_dir() and (CIFAR_CACHE / "test").is_dir():
        return CIFAR_CACHE
    if not SHARED_CIFAR_TAR.is_file():
        pytest.skip(f"{SHARED_CIFAR_TAR} not present")
    import tarfile

    CIFAR_CACHE.mkdir(parents=True, exist_ok=True)
    with tarfile.open(SHARED_CIFAR_TAR) as tar:
        tar.extractall(CIFAR_CACHE, filter="data")
    return CIFAR_CACHE


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance per test module: 2 CPUs, no dashboard, no cluster from the env."""
    os.environ.pop("RAY_ADDRESS", None)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
