"""Free TCP ports for servers started in another process (gateways, estates, receivers,
redis-server), and for "nobody listens here" addresses in tests.

Why not the port `bind(("127.0.0.1", 0))` hands out: it comes from the kernel's
ephemeral range, the same range a client's own source port is drawn from. Until the
server listens, a client polling it (a readiness probe) can be given that very port as
its source, and TCP connects the socket to itself: the probe reads back its own request
("BadStatusLine: GET /readyz HTTP/1.1"), and the server then finds its port taken. So
these ports are drawn from below the ephemeral range, which no client socket is given.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Final

EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below this the well-known and registered services live (PostgreSQL, Redis, RabbitMQ,
# NATS... on this project's machines); a port in use is skipped anyway.
LOWEST: Final = 20_000
MAX_TRIES: Final = 10_000


def free_ports(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports free now (`--workers` puts admin listeners
    side by side), outside the ephemeral range where there is one to avoid."""
    top = _ephemeral_low()
    if top is None or top - LOWEST < 1_000:
        return _kernel_ports(count, host)
    for _ in range(MAX_TRIES):
        first = random.randrange(LOWEST, top - count + 1)
        if all(_bindable(host, port) for port in range(first, first + count)):
            return first
    raise OSError(f"no {count} free consecutive ports in {LOWEST}-{top - 1}")


def _ephemeral_low() -> int | None:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # not Linux, or no /proc: take what the kernel hands out


def _kernel_ports(count: int, host: str) -> int:
    while True:
        with socket.socket() as probe:
            probe.bind((host, 0))
            first: int = probe.getsockname()[1]
        if first + count <= 65_536 and all(
            _bindable(host, port) for port in range(first, first + count)
        ):
            return first


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True
