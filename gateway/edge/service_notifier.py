"""Telling the service manager how the daemon is: the I/O half of gateway/core/sd_notify.py.

`ServiceNotifier` sends a datagram to `NOTIFY_SOCKET` without ever blocking the event
loop (a non-blocking socket: a manager too busy to read loses a STATUS line, never
stalls a request), and does nothing when the daemon was not started by a manager.
`run_heartbeat` is a task on the gateway's own event loop: it sends `WATCHDOG=1`
every half `WATCHDOG_USEC` and the STATUS line when it changed. Because it runs on
that loop, a loop that is wedged (a blocking call, a livelock) stops the pings and
the manager restarts the daemon (`WatchdogSec=` in deploy/duisgw.service).
`ServiceLink` is what the composition root calls as the gateway starts serving,
reloads and begins to drain.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

import trio
from prometheus_client import Counter

from gateway.core import sd_notify
from gateway.core.clock import Clock
from gateway.core.log_fields import log_event
from gateway.core.snapshot import ReloadResult
from gateway.core.versions import VersionRegistry
from gateway.edge.metrics import Metrics
from gateway.edge.server import Draining

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
        versions: VersionRegistry,
        clock: Clock,
        metrics: Metrics,
        duis: tuple[str, int],
        outbox_pending: Callable[[], int],
        draining: Draining,
    ) -> None:
        self.phase = "serving"
        self._versions = versions
        self._clock = clock
        self._metrics = metrics
        self._duis = duis
        self._outbox_pending = outbox_pending
        self._draining = draining

    def line(self) -> str:
        metrics = self._metrics
        return sd_notify.status_line(
            sd_notify.StatusFacts(
                phase=self.phase,
                versions=self._versions.served(self._clock.now().date()),
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


class ServiceLink:
    """The daemon's moments, told to the manager: serving, reloading, draining."""

    def __init__(
        self, notifier: ServiceNotifier, reporter: StatusReporter, nursery: trio.Nursery
    ) -> None:
        self._notifier = notifier
        self._reporter = reporter
        self._nursery = nursery  # where the heartbeat runs: cancelled after the drain

    def serving(self, ready: bool) -> None:
        """READY=1 once both listeners accept (the stores are open by then), and the
        heartbeat from then on; STOPPING=1 as the drain begins."""
        reporter, notifier = self._reporter, self._notifier
        reporter.phase = "serving" if ready else "draining"
        if not ready:
            notifier.send(sd_notify.stopping(reporter.line()))
        elif notifier.enabled:
            notifier.send(sd_notify.ready(reporter.line()))
            self._nursery.start_soon(run_heartbeat, notifier, reporter.line)

    def around_reload(self, reload: Callable[[], ReloadResult]) -> Callable[[], ReloadResult]:
        """`reload` with RELOADING=1 before and READY=1 (its result as STATUS) after."""

        def reload_notified() -> ReloadResult:
            self._reporter.phase = "reloading"
            self._notifier.send(sd_notify.reloading(monotonic_usec(), self._reporter.line()))
            result = reload()  # never raises: a bad file keeps the old set
            self._reporter.phase = "serving"
            self._notifier.send(sd_notify.ready(result.message))  # then the usual STATUS
            return result

        return reload_notified


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
