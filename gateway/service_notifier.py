"""Telling the service manager how the daemon is: the I/O half of gateway/sd_notify.py.

`ServiceNotifier` sends a datagram to `NOTIFY_SOCKET` without ever blocking the event
loop (a non-blocking socket: a manager too busy to read loses a STATUS line, never
stalls a request), and does nothing when the daemon was not started by a manager.
`run_heartbeat` is a task on the gateway's own event loop: it sends `WATCHDOG=1`
every half `WATCHDOG_USEC` and the STATUS line when it changed. Because it runs on
that loop, a loop that is wedged (a blocking call, a livelock) stops the pings and
the manager restarts the daemon (`WatchdogSec=` in deploy/duisgw.service).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

import trio
from prometheus_client import Counter

from gateway import sd_notify
from gateway.log_fields import log_event
from gateway.metrics import Metrics
from gateway.server import Draining
from gateway.state import GatewayState

log = logging.getLogger("duisgw.notify")

# STATUS is refreshed this often (and the watchdog pinged at least this often).
STATUS_INTERVAL_SECONDS = 5.0


class ServiceNotifier:
    def __init__(self, address: str | None, watchdog_seconds: float | None = None) -> None:
        self.address = address
        self.watchdog_seconds = watchdog_seconds if address is not None else None
        self._socket: socket.socket | None = None
        self._failing = False
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServiceNotifier:
        """From NOTIFY_SOCKET and WATCHDOG_USEC; NotifyConfigError if they are unusable."""
        address = sd_notify.notify_address(environ)
        return cls(address, sd_notify.watchdog_seconds(environ, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send the assignments; False (logged once per failure spell) if they were lost."""
        if self._socket is None or self.address is None or not fields:
            return False
        try:
            self._socket.sendto(sd_notify.encode(fields), self.address)
        except OSError as exc:
            if not self._failing:
                log_event(
                    log,
                    logging.WARNING,
                    "service manager notification lost",
                    "notification to the service manager lost: %(error)s",
                    error=exc.strerror or repr(exc),
                )
            self._failing = True
            return False
        self._failing = False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()


def counter_total(counter: Counter) -> int:
    """Sum of a labelled counter over all its children."""
    return int(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


class StatusReporter:
    """The one-line STATUS of a running gateway, from its live state."""

    def __init__(
        self,
        state: GatewayState,
        duis: tuple[str, int],
        outbox_pending: Callable[[], int],
        draining: Draining,
    ) -> None:
        self.phase = "serving"
        self._state = state
        self._duis = duis
        self._outbox_pending = outbox_pending
        self._draining = draining

    def line(self) -> str:
        state = self._state
        metrics: Metrics = state.metrics
        return sd_notify.status_line(
            sd_notify.StatusFacts(
                phase=self.phase,
                versions=state.versions.served(state.clock.now().date()),
                duis=self._duis,
                requests=counter_total(metrics.requests),
                refusals=counter_total(metrics.refusals) + counter_total(metrics.http_errors),
                outbox_pending=self._outbox_pending(),
                in_flight=self._draining.in_flight,
            )
        )


async def run_heartbeat(
    notifier: ServiceNotifier,
    status: Callable[[], str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """WATCHDOG=1 (when the manager asked for it) and STATUS= when it changed, forever.

    Started right after READY=1, which carried the first STATUS.
    """
    period = STATUS_INTERVAL_SECONDS
    if notifier.watchdog_seconds is not None:
        period = min(period, sd_notify.ping_period(notifier.watchdog_seconds))
    task_status.started()
    sent = status()
    while True:
        await trio.sleep(period)
        fields: dict[str, str] = {}
        if notifier.watchdog_seconds is not None:
            fields.update(sd_notify.watchdog())
        line = _status_or(sent, status)
        if line != sent:
            fields.update(sd_notify.status(line))
        if notifier.send(fields) and "STATUS" in fields:
            sent = line


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: the clock MONOTONIC_USEC= is read against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _status_or(previous: str, status: Callable[[], str]) -> str:
    """The STATUS line; the previous one if building it failed (our bug, logged): the
    watchdog ping must not depend on it, nor the daemon on either."""
    try:
        return status()
    except Exception:
        log_event(log, logging.ERROR, "status line failed", exc_info=True)
        return previous
