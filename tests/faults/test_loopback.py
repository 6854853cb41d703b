"""The local Ray instance raynas starts listens on loopback only.

A real ``raynas score`` runs in its own process (it starts its own Ray instance, with an evaluator
actor); while it runs, every listening TCP socket of that process and of the processes it started
is read from ``/proc`` and must be on 127.0.0.1 (or its IPv4-mapped IPv6 form).
"""

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc")


def descendants(root: int) -> set[int]:
    """``root`` and every process started under it (by parent pid, from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree = {root}
    while new := {p for p, parent in parents.items() if parent in tree and p not in tree}:
        tree |= new
    return tree


def address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``0100007F`` -> 127.0.0.1; 32 hex digits -> an IPv6 address (/proc stores each 32-bit word little-endian)."""
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    return ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def is_loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, how a dual-stack socket shows 127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def listeners(root: int) -> set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(address, port) of every listening TCP socket owned by ``root``'s process tree."""
    inodes = set()
    for pid in descendants(root):
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ip, port = fields[1].rsplit(":", 1)
                found.add((address(ip), int(port, 16)))
    return found


def test_no_socket_of_a_local_run_listens_beyond_loopback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen([sys.executable, "-m", "raynas", "score", "nb201", "--estimator", "naswot",
                                "--sample", "6", "--data", "synthetic", "--probe-images", "8",
                                "--out", str(tmp_path / "scores")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen: set = set()
    try:
        while process.poll() is None:
            seen |= listeners(process.pid)
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert process.returncode == 0, output
    assert len(seen) >= 3, f"expected the GCS, the raylet and the driver among the listeners, saw {seen}"
    beyond = sorted(f"{ip}:{port}" for ip, port in seen if not is_loopback(ip))
    assert not beyond, f"listening beyond loopback: {beyond}"
