"""An ``--address`` that names no reachable cluster fails within ``--connect-timeout``, by one line,
before anything is written; a local run (no address) is not slowed by the check."""

import importlib.util
import socket

import pytest
import ray

from raynas.cli import main
from raynas.errors import ConfigError
from raynas.ray_env import check_address


def closed_port() -> int:
    """A port nothing listens on: bound, never listened to, then freed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused(capsys, tmp_path, address, message):
    out = tmp_path / "out"
    assert main(["search", "nb201", "--evaluator", "naswot", "--address", address, "--connect-timeout", "1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not ray.is_initialized()


def test_an_address_that_does_not_answer_fails_within_the_timeout(tmp_path, capsys):
    port = closed_port()
    refused(capsys, tmp_path, f"127.0.0.1:{port}", f"nothing answered at 127.0.0.1:{port} within 1 s")


def test_auto_with_no_cluster_fails_by_one_line(tmp_path, capsys, monkeypatch):
    from ray._private.services import find_gcs_addresses

    if find_gcs_addresses():  # "auto" joins any Ray instance running on this machine, whoever started it
        pytest.skip("another Ray instance runs on this machine: --address auto would join it")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))  # no cluster recorded there
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    refused(capsys, tmp_path, "auto", "--address auto: no running Ray cluster found")


@pytest.mark.skipif(importlib.util.find_spec("grpc") is not None, reason="Ray Client is installed here")
def test_ray_client_without_its_extra_says_how_to_enable_it(tmp_path, capsys):
    refused(capsys, tmp_path, "ray://127.0.0.1:10001", "pip install 'ray[client]'")


@pytest.mark.parametrize("address", ["nonsense", "host:port", ":80"])
def test_a_malformed_address_is_refused(address):
    with pytest.raises(ConfigError, match="expected 'auto', HOST:PORT or ray://HOST:PORT"):
        check_address(address, timeout=1)


def test_an_address_that_answers_passes_the_check():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_address(f"127.0.0.1:{server.getsockname()[1]}", timeout=1)
    check_address(None)  # a local instance: nothing to check
