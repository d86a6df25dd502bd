"""`duisgw serve` under a service manager: the test owns the NOTIFY_SOCKET.

A real daemon (and a real `--workers 2` supervisor) is started with NOTIFY_SOCKET
naming an abstract-namespace datagram socket of the test's, as systemd starts a
`Type=notify` unit, and WATCHDOG_USEC as `WatchdogSec=` sets it. The test sees READY=1
only once the DUIS port answers, WATCHDOG=1 within every interval, no pings while the
process is stopped (SIGSTOP: its event loop cannot turn) and pings again after
SIGCONT, RELOADING=1 / READY=1 around SIGHUP, STOPPING=1 on SIGTERM. Under the
supervisor, a worker stopped past the watchdog interval is killed and replaced.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from bench.ports import free_ports
from gateway.core import sd_notify
from tests.test_durability import write_config
from tests.test_workers import inventory_request, worker_ports

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
WATCHDOG_SECONDS = 2.0  # WatchdogSec=2: pings every second
START_TIMEOUT_SECONDS = 60.0
Message = dict[str, str]


class Manager:
    """The service manager's end of the protocol, as systemd binds it."""

    def __init__(self, sock: trio.socket.SocketType, name: str) -> None:
        self.sock = sock
        self.notify_socket = "@" + name
        self.seen: list[tuple[float, Message]] = []

    async def receive(self, within: float) -> Message:
        with trio.fail_after(within):
            data = await self.sock.recv(sd_notify.MAX_DATAGRAM_BYTES)
        message = sd_notify.parse(data)
        self.seen.append((time.monotonic(), message))
        return message

    async def until(self, key: str, within: float) -> Message:
        """Receive until a message carries `key`; return that message."""
        deadline = trio.current_time() + within
        while True:
            message = await self.receive(deadline - trio.current_time())
            if key in message:
                return message

    async def collect(self, seconds: float) -> list[tuple[float, Message]]:
        """Everything received in the next `seconds`, with arrival times."""
        start = len(self.seen)
        with trio.move_on_after(seconds):
            while True:
                await self.receive(seconds + 1)
        return self.seen[start:]


@asynccontextmanager
async def manager() -> AsyncIterator[Manager]:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    name = f"duisgw-test-{uuid.uuid4().hex}"
    await sock.bind("\0" + name)
    try:
        yield Manager(sock, name)
    finally:
        sock.close()


def start(config: Path, notify: Manager, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(NOTIFY_SOCKET=notify.notify_socket, WATCHDOG_USEC=str(int(WATCHDOG_SECONDS * 1e6)))
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def pings(messages: list[tuple[float, Message]]) -> list[float]:
    return [t for t, m in messages if m.get("WATCHDOG") == "1"]


def assert_pinged_within_the_interval(times: list[float]) -> None:
    assert len(times) >= 2, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < WATCHDOG_SECONDS, gaps


async def test_ready_watchdog_reload_and_stop(tmp_path: Path, shared_dir: Path) -> None:
    duis, admin = free_ports(), free_ports()
    config = write_config(tmp_path, duis, admin, receiver=9, latency=0.001)
    async with manager() as notify:
        process = start(config, notify)
        try:
            ready = await notify.until("READY", START_TIMEOUT_SECONDS)
            # READY=1 means serving: the DUIS port answers a request at once.
            assert await inventory_request(shared_dir, tmp_path / "pki", duis) == "I0"
            assert ready["READY"] == "1" and ready["STATUS"].startswith("serving: DUIS 5.0")
            assert [m for _, m in notify.seen[:-1]] == []  # nothing before READY

            assert_pinged_within_the_interval(pings(await notify.collect(3.5)))

            # A stopped process is a wedged event loop as the manager sees it: no pings.
            os.kill(process.pid, signal.SIGSTOP)
            try:
                stopped = await notify.collect(WATCHDOG_SECONDS * 1.5)
            finally:
                os.kill(process.pid, signal.SIGCONT)
            assert stopped == []
            assert (await notify.until("WATCHDOG", WATCHDOG_SECONDS))["WATCHDOG"] == "1"

            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            process.send_signal(signal.SIGHUP)
            reloading = await notify.until("RELOADING", 10)
            assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
            reloaded = await notify.until("READY", 30)
            assert reloaded["STATUS"].startswith("reloaded: 5 users")

            process.send_signal(signal.SIGTERM)
            stopping = await notify.until("STOPPING", 30)
            assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("draining")
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


async def admin_ready(port: int) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False


async def test_workers_ready_together_and_a_wedged_worker_is_replaced(
    tmp_path: Path, shared_dir: Path
) -> None:
    duis, admin = worker_ports()
    config = write_config(tmp_path, duis, admin, receiver=9, latency=0.001)
    async with manager() as notify:
        process = start(config, notify, "--workers", "2")
        try:
            ready = await notify.until("READY", START_TIMEOUT_SECONDS)
            assert ready["STATUS"] == "2 of 2 workers ready"
            # Said by the supervisor once both workers had said it: both answer now.
            assert await admin_ready(admin) and await admin_ready(admin + 1)
            assert await inventory_request(shared_dir, tmp_path / "pki", duis) == "I0"
            assert_pinged_within_the_interval(pings(await notify.collect(2.5)))

            workers = children(process.pid)
            assert len(workers) == 2
            wedged = min(workers)
            os.kill(wedged, signal.SIGSTOP)
            # The supervisor keeps pinging for the unit while it replaces the worker.
            with trio.fail_after(30):
                while wedged in children(process.pid):
                    await notify.receive(30)
            assert_pinged_within_the_interval(pings(await notify.collect(2.5)))
            with trio.fail_after(START_TIMEOUT_SECONDS):
                while not (await admin_ready(admin) and await admin_ready(admin + 1)):
                    await trio.sleep(0.1)
            assert len(children(process.pid)) == 2

            process.send_signal(signal.SIGTERM)
            assert (await notify.until("STOPPING", 30))["STOPPING"] == "1"
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
