"""A local Ray run started by weightspace listens on loopback addresses only.

While a `RayBackend` run is between results (Ray up, workers started), the test lists
every listening TCP socket (IPv4 and IPv6) of the processes Ray started — this process's
descendants and anything whose command line names the Ray session — from /proc, and
asserts each is bound to 127.0.0.0/8 or ::1 (an IPv4-mapped ``::ffff:127.x.y.z`` counts:
it is an IPv6 socket that accepts loopback IPv4 only). Without the backend's fix, Ray
2.60's GCS, raylet and workers bound ``::`` and its runtime-env agent the machine's address.
"""

from __future__ import annotations

import ipaddress
import operator
import os
from pathlib import Path

import pytest

from weightspace.zoo.backends import _RAY_CLUSTER_ENV, RayBackend

PROC = Path("/proc")
pytestmark = pytest.mark.skipif(not (PROC / "net" / "tcp").exists(), reason="needs Linux /proc")


def _hex_to_ip(hex_addr: str) -> str:
    """Decode /proc/net/tcp{,6}'s address: 32-bit words, each in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def _listening_inodes() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) for every TCP socket in state LISTEN (0A)."""
    found = {}
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":
                continue
            addr, port = fields[1].split(":")
            found[int(fields[9])] = (_hex_to_ip(addr), int(port, 16))
    return found


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, short name, command line) of every process we can read."""
    table = {}
    for d in PROC.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        table[int(d.name)] = (ppid, name, cmdline)
    return table


def _ray_processes(session_dir: str) -> dict[int, str]:
    """This process, its descendants, and any process naming the session: pid -> name."""
    table = _proc_table()
    ours = {os.getpid()}
    grew = True
    while grew:
        kids = {pid for pid, (ppid, _, _) in table.items() if ppid in ours} - ours
        ours |= kids
        grew = bool(kids)
    ours |= {pid for pid, (_, _, cmd) in table.items() if session_dir in cmd}
    return {pid: table[pid][1] for pid in ours if pid in table}


def _listening(pids: dict[int, str]) -> list[tuple[int, str, str, int]]:
    """(pid, name, address, port) for each listening TCP socket a process in ``pids`` holds."""
    inodes = _listening_inodes()
    out = []
    for pid, name in pids.items():
        try:
            fds = list((PROC / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    out.append((pid, name, *inodes[inode]))
    return out


def _is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def test_hex_decoding_and_loopback_rule() -> None:
    # the test's own parsing, checked on the kernel's encodings of known addresses
    ip = ipaddress.ip_address
    assert ip(_hex_to_ip("0100007F")) == ip("127.0.0.1")
    assert ip(_hex_to_ip("00000000000000000000000001000000")) == ip("::1")
    assert ip(_hex_to_ip("0000000000000000FFFF00000100007F")) == ip("::ffff:127.0.0.1")
    assert ip(_hex_to_ip("00000000000000000000000000000000")) == ip("::")
    assert [_is_loopback(a) for a in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1")] == [True] * 4
    assert [_is_loopback(a) for a in ("0.0.0.0", "::", "192.0.2.2", "::ffff:10.0.0.1")] == [False] * 4


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only() -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already running in this process; the test needs to start its own")
    env_before = os.environ.get(_RAY_CLUSTER_ENV)
    backend = RayBackend(max_in_flight=2, init_kwargs={"num_cpus": 2, "log_to_driver": False})
    # operator.add as the work: importable by every worker, so no weightspace code is shipped
    run = backend.run(10, [1, 2, 3], work=operator.add)
    results = [next(run)]  # Ray is up, the first task ran: a worker exists
    try:
        session = ray._private.worker._global_node.get_session_dir_path()  # e.g. /tmp/ray/session_...
        procs = _ray_processes(session)
        sockets = _listening(procs)
        names = {name for _, name, _, _ in sockets}
        # the check must have looked at Ray's servers, not at nothing
        assert {"gcs_server", "raylet"} <= names, sockets
        assert any(pid != os.getpid() and name.startswith("ray::") for pid, name, _, _ in sockets), sockets
        exposed = [s for s in sockets if not _is_loopback(s[2])]
        assert not exposed, f"listening beyond loopback: {exposed}"
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    finally:
        results += list(run)  # finishes the run, which shuts Ray down
    assert sorted(results) == [11, 12, 13]
    assert not ray.is_initialized()
    assert os.environ.get(_RAY_CLUSTER_ENV) == env_before  # the backend restored the environment
