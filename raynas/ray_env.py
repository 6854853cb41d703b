"""Connecting to Ray, and making sure what a command asks of it can run there.

A local instance (this process started it) never grows, so a request it cannot hold is refused
up front. A cluster joined through an address may grow (an autoscaler adds nodes for pending
work), so there a request is waited for, with progress lines and a time limit.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ray

from raynas.errors import ConfigError
from raynas.interrupts import raise_on_sigterm
from raynas.logs import get_logger

logger = get_logger(__name__)

POLL_SECONDS = 1.0
"""Longest single ``ray.wait``: a wait without a timeout keeps Ctrl-C (a Python signal) from landing."""


_ray_log_level = logging.INFO


def set_ray_log_level(level: int) -> None:
    """The level of Ray's own driver-side log lines (``ray`` loggers); the CLI keeps them to errors
    unless ``-v``: a search's progress is raynas's lines, not Ray's start-up notes."""
    global _ray_log_level
    _ray_log_level = level
    for name in ("ray", "ray.train", "ray.tune", "ray.data", "ray.air"):
        logging.getLogger(name).setLevel(level)


CONNECT_TIMEOUT = 30.0
"""Seconds an ``--address`` may take to answer before the command gives up (``--connect-timeout``)."""
_connect_timeout = CONNECT_TIMEOUT


def set_connect_timeout(seconds: float) -> None:
    global _connect_timeout
    _connect_timeout = float(seconds)


def check_address(address: str | None, timeout: float | None = None) -> None:
    """Fail within ``timeout`` seconds, by one line, when ``address`` names no reachable cluster.

    ``ray.init`` retries an address that does not answer for ever, and reports a missing Ray
    Client or an absent ``auto`` cluster by a raw exception. A TCP connection to the head's port
    is what a join needs first, so that is what is waited for here (None: a local instance, nothing to check).
    """
    if address is None:
        return
    timeout = _connect_timeout if timeout is None else timeout
    target = address
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:
            raise ConfigError(f"--address {address}: Ray Client is not installed; pip install 'ray[client]' to join "
                              "through ray://, or run on the head node with --address auto")
        target = address[len("ray://"):]
    elif address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            target = canonicalize_bootstrap_address("auto") or ""
        except ConnectionError:  # Ray's own word for "no instance found"
            target = ""
        if not target:
            raise ConfigError("--address auto: no running Ray cluster found on this machine; start one with "
                              "`ray start --head`, pass its address, or leave --address out for a local instance")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected 'auto', HOST:PORT or ray://HOST:PORT")
    _wait_for_port(address, host.strip("[]"), int(port), timeout)


def _wait_for_port(address: str, host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))).close()
            return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ConfigError(f"--address {address}: nothing answered at {host}:{port} within {timeout:g} s "
                                  f"({err.strerror or err}); check that the cluster's head is running (`ray status` "
                                  "there) and that this machine can reach that port, or raise --connect-timeout"
                                  ) from None
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def ensure_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Start or join Ray once. ``address`` is None (local), "auto" or "ray://host:10001".

    ``quiet`` keeps worker logs out of the driver's terminal (they stay in Ray's log folder);
    training progress is printed by the driver itself.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"include_dashboard": False, "log_to_driver": not quiet, "logging_level": _ray_log_level}
    if address is None:
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        listen_on_loopback()
    else:
        check_address(address)
    ray.init(address=address, **kwargs)
    raise_on_sigterm()  # ray.init's handler would sys.exit from anywhere


def listen_on_loopback() -> None:
    """Make the local instance this process starts listen on 127.0.0.1 only.

    On Linux, Ray names a node by the host's routable address and its servers listen on every
    interface; a run on one machine has no reason to be reachable from the network. Ray's
    switch for single-machine use (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the macOS and Windows
    default) makes the node's address loopback, and every server of the instance (GCS, raylet,
    workers, agents) then listens there. Ray reads the variable once, at import, so the constant
    it sets is set here, before the instance starts. Joining a cluster (``--address``) is left alone.
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for processes this one starts
    ray_constants.ENABLE_RAY_CLUSTER = False


def started_locally() -> bool:
    """True when this process started the Ray instance it uses (no autoscaler can add nodes).

    Asked of the driver's own node rather than of the address it was given: ``ray.init()``
    without an address joins a cluster started by ``ray start`` on this machine, and tests join
    clusters through ``ray.init(address=...)`` directly. Only the starting process holds the head.
    """
    node = getattr(ray._private.worker, "_global_node", None)  # None under Ray Client
    return ray.is_initialized() and bool(getattr(node, "head", False))


@dataclass(frozen=True)
class ResourceRequest:
    """``count`` workers or actors of ``cpus`` CPUs and ``gpus`` GPUs each, named for messages.

    ``what`` names them ("workers", "evaluator actors") and ``flag`` is the option that sets
    their number, so an error says what to change.
    """

    count: int
    cpus: float
    gpus: float = 0.0
    what: str = "workers"
    flag: str = "--workers"

    def needs(self) -> dict[str, float]:
        return {"CPU": self.count * self.cpus, "GPU": self.count * self.gpus}

    def shortfalls(self, total: Mapping[str, float]) -> list[str]:
        """One phrase per resource that ``total`` cannot hold, e.g. '8 workers x 1 CPU need 8 CPUs, ...'."""
        hints = {"CPU": f"lower {self.flag} or add nodes", "GPU": "drop --gpu or add GPU nodes"}
        each = {"CPU": self.cpus, "GPU": self.gpus}
        return [f"{self.count} {self.what} x {each[name]:g} {name} need {need:g} {name}s, but the Ray cluster has "
                f"{total.get(name, 0):g}; {hints[name]}"
                for name, need in self.needs().items() if need > total.get(name, 0)]

    def progress(self, total: Mapping[str, float], started: int) -> str:
        have = ", ".join(f"{total.get(name, 0):g} of {need:g} {name}s available"
                         for name, need in self.needs().items() if need > 0)
        return f"{have}, {started} of {self.count} started"


def check_resources(num_workers: int, cpus_per_worker: float, gpus_per_worker: float = 0.0) -> None:
    """Fail fast, instead of hanging, when a local Ray instance cannot hold the requested workers."""
    require(ResourceRequest(num_workers, cpus_per_worker, gpus_per_worker))


def require(request: ResourceRequest) -> None:
    """Refuse ``request`` when a local Ray instance cannot hold it; on a joined cluster, see ``wait_started``."""
    if not started_locally():
        return
    shortfalls = request.shortfalls(ray.cluster_resources())
    if shortfalls:
        raise ConfigError("; and ".join(shortfalls))


def wait_started(ready: Sequence[ray.ObjectRef], request: ResourceRequest, timeout: float,
                 every: float = 30.0) -> None:
    """Wait until every ref of ``ready`` (one per worker or actor, resolved once it runs) resolves.

    Waiting, rather than refusing, leaves the request pending, which is what makes an
    autoscaler add nodes. A shortage is reported at once, progress every ``every`` seconds, and
    after ``timeout`` seconds a ``ConfigError`` says what is missing. Errors the refs hold are
    left to the caller.
    """
    now = time.monotonic()
    deadline, next_line = now + timeout, now + every
    pending = list(ready)
    if request.shortfalls(ray.cluster_resources()):
        _log_wait(request, 0, deadline)
    while pending:
        now = time.monotonic()
        if now >= deadline:
            raise ConfigError(f"{len(ready) - len(pending)} of {request.count} {request.what} started in "
                              f"{timeout:g} s: {_missing(request)}")
        if now >= next_line:
            _log_wait(request, len(ready) - len(pending), deadline)
            next_line = now + every
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=min(POLL_SECONDS, deadline - now))


def _missing(request: ResourceRequest) -> str:
    total, free = ray.cluster_resources(), ray.available_resources()
    shortfalls = request.shortfalls(total)
    if shortfalls:
        return "; and ".join(shortfalls)
    return (f"the Ray cluster has the {request.needs()['CPU']:g} CPUs they need ({total.get('CPU', 0):g}), "
            f"but only {free.get('CPU', 0):g} stay free; end the other work or add nodes")


def _log_wait(request: ResourceRequest, started: int, deadline: float) -> None:
    left = max(0.0, deadline - time.monotonic())
    logger.warning(f"waiting for {request.count} {request.what}: "
                   f"{request.progress(ray.cluster_resources(), started)}; giving up in {left:.0f} s")
