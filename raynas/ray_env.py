"""Connecting to Ray: a local instance by default, a cluster through ``address``."""

from __future__ import annotations

import os

import ray

from raynas.errors import ConfigError

_JOINED: dict[str, str | None] = {"address": None}


def ensure_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Start or join Ray once. ``address`` is None (local), "auto" or "ray://host:10001".

    ``quiet`` keeps worker logs out of the driver's terminal (they stay in Ray's log folder);
    training progress is printed by the driver itself.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"include_dashboard": False, "log_to_driver": not quiet}
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    _JOINED["address"] = address
    ray.init(address=address, **kwargs)


def started_locally() -> bool:
    """True when this process started its own Ray instance (no autoscaler can add nodes)."""
    return ray.is_initialized() and not (os.environ.get("RAY_ADDRESS") or _JOINED["address"])


def check_resources(num_workers: int, cpus_per_worker: float, gpus_per_worker: float = 0.0) -> None:
    """Fail fast, instead of hanging, when a local Ray instance cannot hold the requested workers.

    On a cluster joined through an address the check is skipped: an autoscaler may add the nodes.
    """
    if not started_locally():
        return
    total = ray.cluster_resources()
    need_cpu = num_workers * cpus_per_worker
    need_gpu = num_workers * gpus_per_worker
    if need_cpu > total.get("CPU", 0):
        raise ConfigError(
            f"{num_workers} workers x {cpus_per_worker:g} CPU need {need_cpu:g} CPUs, but the Ray cluster has "
            f"{total.get('CPU', 0):g}; lower --workers or add nodes"
        )
    if need_gpu > total.get("GPU", 0):
        raise ConfigError(
            f"{num_workers} workers x {gpus_per_worker:g} GPU need {need_gpu:g} GPUs, but the Ray cluster has "
            f"{total.get('GPU', 0):g}; drop --gpu or add GPU nodes"
        )
