"""One local Ray instance per test module (import the fixture into a module to use it)."""

from __future__ import annotations

import os

import pytest
import ray


@pytest.fixture(scope="module")
def ray_local():
    os.environ.pop("RAY_ADDRESS", None)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
