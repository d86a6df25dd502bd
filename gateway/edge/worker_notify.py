"""The `--workers N` supervisor's end of the notify protocol: a socket per worker.

Worker i is started with `NOTIFY_SOCKET` naming a datagram socket of the supervisor's
(in a private temporary directory, mode 0700) and, under a watchdog, the manager's
`WATCHDOG_USEC`; the socket tells the supervisor which worker spoke, without
trusting anything the worker writes. What the workers say goes through
gateway/core/worker_fleet.py, and what it decides goes to the manager through the
supervisor's own `ServiceNotifier`. The supervisor listens with or without a manager:
it is how it knows which workers are serving (and may be sent SIGHUP).

The supervisor is a plain blocking loop (gateway/edge/workers.py), so this is too:
`wait` is a `select` with a timeout.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import tempfile
import time
from pathlib import Path

from gateway.core import sd_notify
from gateway.core.log_fields import log_event
from gateway.core.worker_fleet import WorkerFleet
from gateway.edge.service_notifier import STATUS_INTERVAL_SECONDS, ServiceNotifier, monotonic_usec

log = logging.getLogger("duisgw.workers")


class WorkerNotifyRelay:
    def __init__(self, upstream: ServiceNotifier, workers: int) -> None:
        self._upstream = upstream
        self.fleet = WorkerFleet(workers, upstream.watchdog_seconds)
        self._directory = Path(tempfile.mkdtemp(prefix="duisgw-notify-"))  # 0700
        self._sockets: dict[int, socket.socket] = {}
        self._next_heartbeat = 0.0
        self._sent_status = ""
        for index in range(workers):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(self._directory / f"worker-{index}"))
            sock.setblocking(False)
            self._sockets[index] = sock

    def worker_environ(self, index: int) -> dict[str, str]:
        """The environment worker `index` is started with."""
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in (sd_notify.NOTIFY_SOCKET, sd_notify.WATCHDOG_USEC, sd_notify.WATCHDOG_PID)
        }
        environ[sd_notify.NOTIFY_SOCKET] = str(self._directory / f"worker-{index}")
        if self.fleet.watchdog_seconds is not None:
            usec = round(self.fleet.watchdog_seconds * 1_000_000)
            environ[sd_notify.WATCHDOG_USEC] = str(usec)
        return environ

    def spawned(self, index: int) -> None:
        self._drain(index)  # whatever the previous worker i left unread is stale
        self.fleet.spawned(index, time.monotonic())

    def exited(self, index: int) -> None:
        self.fleet.exited(index)

    def reload(self) -> list[int]:
        """The workers to pass SIGHUP to; the manager hears RELOADING=1."""
        serving, fields = self.fleet.reload_requested(monotonic_usec())
        self._upstream.send(fields)
        return serving

    def stop(self) -> None:
        self._upstream.send(self.fleet.stop_requested())

    def overdue(self) -> list[int]:
        return self.fleet.overdue(time.monotonic())

    def wait(self, timeout_seconds: float) -> None:
        """Up to `timeout_seconds`: relay what the workers say, keep the heartbeat."""
        self._heartbeat()
        readable, _, _ = select.select(list(self._sockets.values()), [], [], timeout_seconds)
        for index, sock in self._sockets.items():
            if sock in readable:
                self._receive(index, sock)
        self._heartbeat()

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _receive(self, index: int, sock: socket.socket) -> None:
        while True:
            try:
                datagram = sock.recv(sd_notify.MAX_DATAGRAM_BYTES)
            except BlockingIOError:
                return
            fields = sd_notify.parse(datagram)
            announcement = self.fleet.received(index, fields, time.monotonic())
            if announcement:
                log_event(log, logging.INFO, "workers ready", status=self.fleet.status_line())
                self._upstream.send(announcement)

    def _drain(self, index: int) -> None:
        sock = self._sockets[index]
        while True:
            try:
                sock.recv(sd_notify.MAX_DATAGRAM_BYTES)
            except BlockingIOError:
                return

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat or not self._upstream.enabled:
            return
        period = STATUS_INTERVAL_SECONDS
        if self.fleet.watchdog_seconds is not None:
            period = min(period, sd_notify.ping_period(self.fleet.watchdog_seconds))
        fields = self.fleet.heartbeat()
        if fields.get("STATUS") == self._sent_status:
            del fields["STATUS"]
        if self._upstream.send(fields) and "STATUS" in fields:
            self._sent_status = fields["STATUS"]
        self._next_heartbeat = now + period
