"""The embedded Ray listens on loopback only: every socket that any of its processes (the
driver, GCS, raylet, dashboard and its agents, workers) listens on is bound to 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
import socket

import psutil
from conftest import start_ray


def listening_sockets(proc: psutil.Process) -> list[tuple[str, str, int]]:
    """(process name, bound address, port) of every listening TCP or bound UDP socket."""
    out = []
    try:
        conns = proc.net_connections(kind="inet")
        name = proc.name()
    except psutil.NoSuchProcess:  # a worker that exited while we looked
        return []
    for c in conns:
        listening = c.status == psutil.CONN_LISTEN if c.type == socket.SOCK_STREAM else not c.raddr
        if listening:
            out.append((name, c.laddr.ip, c.laddr.port))
    return out


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:127.0.0.1, a dual-stack socket bound to loopback
    return addr.is_loopback


def test_every_port_of_the_embedded_ray_is_on_loopback():
    ray = start_ray()

    @ray.remote
    class Echo:  # an actor and a task: worker processes with their own gRPC servers
        def ping(self) -> int:
            return 1

    @ray.remote
    def one() -> int:
        return 1

    assert ray.get([Echo.remote().ping.remote(), one.remote()]) == [1, 1]
    driver = psutil.Process()
    sockets = [s for p in [driver, *driver.children(recursive=True)] for s in listening_sockets(p)]
    names = {name for name, _, _ in sockets}
    # Not vacuous: the core servers and the dashboard (on the port the State API is pointed
    # at, pipeline.ray_runtime._pin_state_api) are among them.
    dashboard = int(os.environ["RAY_API_SERVER_ADDRESS"].rsplit(":", 1)[1])
    assert {"gcs_server", "raylet"} <= names and any(port == dashboard for *_, port in sockets)
    assert len(sockets) >= 8, sockets
    exposed = [s for s in sockets if not is_loopback(s[1])]
    assert not exposed, f"listening beyond loopback: {exposed}"
