"""bench/ports.py: ports for servers started elsewhere come from below the ephemeral
range, so a readiness probe can never be given the server's port as its own source
port (TCP would connect the probe to itself: CI once read "GET /readyz" back as the
answer's status line)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bench import ports


def _ephemeral_low() -> int:
    if not ports.EPHEMERAL_RANGE.exists():
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range on this system")
    return int(ports.EPHEMERAL_RANGE.read_text().split()[0])


def test_ports_come_from_below_the_ephemeral_range_and_are_free() -> None:
    low = _ephemeral_low()
    for _ in range(50):
        first = ports.free_ports(3)
        assert first >= ports.LOWEST and first + 2 < low
        for port in range(first, first + 3):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))  # free: raises if not


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    free = ports.free_ports(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        draws = iter([busy, free])  # the busy port is drawn first, and passed over
        monkeypatch.setattr(ports, "_ephemeral_low", lambda: 65_000)
        monkeypatch.setattr(ports.random, "randrange", lambda lo, hi: next(draws))
        assert ports.free_ports(1) == free


def test_without_the_range_the_kernel_hands_the_port_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", Path("/nonexistent/ip_local_port_range"))
    first = ports.free_ports(2)
    for port in (first, first + 1):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
