"""The notifier's I/O and the heartbeat task, in process (the daemon end to end is
tests/test_systemd_notify.py)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import trio

from gateway.core import sd_notify
from gateway.edge.service_notifier import ServiceNotifier, run_heartbeat


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """The service manager's end: a datagram socket the test owns."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[dict[str, str]]:
    messages = []
    while True:
        try:
            messages.append(sd_notify.parse(sock.recv(4096)))
        except BlockingIOError:
            return messages


async def test_heartbeat_pings_at_half_the_interval_and_sends_status_when_it_changes(
    manager: socket.socket, autojump_clock: trio.abc.Clock
) -> None:
    notifier = ServiceNotifier(manager.getsockname(), watchdog_seconds=0.4)
    lines = iter(["a"] * 4 + ["b"] * 100)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_heartbeat, notifier, lambda: next(lines))
        await trio.sleep(2.05)
        nursery.cancel_scope.cancel()
    messages = received(manager)
    assert len(messages) == 10  # every 0.2 s for 2.05 s
    assert all(m["WATCHDOG"] == "1" for m in messages)
    # "a" went with READY=1 (not the heartbeat's to send); "b" once, when it changed.
    assert [m.get("STATUS") for m in messages if "STATUS" in m] == ["b"]
    notifier.close()


async def test_without_a_watchdog_only_status_is_sent(
    manager: socket.socket, autojump_clock: trio.abc.Clock
) -> None:
    notifier = ServiceNotifier(manager.getsockname())
    count = iter(range(100))
    async with trio.open_nursery() as nursery:
        await nursery.start(run_heartbeat, notifier, lambda: f"{next(count)} requests")
        await trio.sleep(12)
        nursery.cancel_scope.cancel()
    assert [m for m in received(manager)] == [{"STATUS": "1 requests"}, {"STATUS": "2 requests"}]


class RecordingNotifier(ServiceNotifier):
    """When each message was sent: the real socket is the other tests' business."""

    def __init__(self, watchdog_seconds: float) -> None:
        super().__init__("/nonexistent", watchdog_seconds)
        self.pings: list[float] = []

    def send(self, fields: Mapping[str, str]) -> bool:
        if fields.get("WATCHDOG") == "1":
            self.pings.append(time.monotonic())
        return True


async def test_a_blocked_event_loop_sends_no_pings() -> None:
    """The pings come from the event loop itself: while it is blocked, none go out."""
    notifier = RecordingNotifier(watchdog_seconds=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_heartbeat, notifier, lambda: "")
        await trio.sleep(0.35)
        blocked_from = time.monotonic()
        time.sleep(0.6)  # wedging the loop is the point
        blocked_until = time.monotonic()
        await trio.sleep(0.35)
        nursery.cancel_scope.cancel()
    before = [t for t in notifier.pings if t < blocked_from]
    during = [t for t in notifier.pings if blocked_from <= t < blocked_until]
    after = [t for t in notifier.pings if t >= blocked_until]
    assert before and after
    assert during == []


def test_a_lost_notification_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="duisgw.notify")
    notifier = ServiceNotifier(str(tmp_path / "nobody-listens"))
    assert notifier.send(sd_notify.ready()) is False
    assert notifier.send(sd_notify.watchdog()) is False
    assert len(caplog.records) == 1
    assert "notification to the service manager lost" in caplog.records[0].getMessage()
    notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = ServiceNotifier.from_environ({})
    assert not notifier.enabled and notifier.watchdog_seconds is None
    assert notifier.send(sd_notify.ready()) is False


async def test_a_failing_status_line_does_not_stop_the_pings(
    manager: socket.socket, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    calls = iter(range(100))

    def status() -> str:
        if next(calls) == 2:
            raise RuntimeError("a bug in the STATUS line")
        return "fine"

    notifier = ServiceNotifier(manager.getsockname(), watchdog_seconds=0.4)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_heartbeat, notifier, status)
        await trio.sleep(1.05)
        nursery.cancel_scope.cancel()
    assert [m["WATCHDOG"] for m in received(manager)] == ["1"] * 5
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "status line failed"
    ]
    notifier.close()
