"""Free loopback ports for the servers tests start (Ray heads, raylets, moto)."""

from __future__ import annotations

import contextlib
import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free on 127.0.0.1. Every socket stays bound until all are picked: a
    port closed at once may be handed out again by the next bind (CI saw `ray start` get the
    same port for --port and --ray-client-server-port and fail)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
