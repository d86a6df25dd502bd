"""What the `--workers N` supervisor tells the service manager, from what its workers
tell it (sans-IO; the sockets are gateway/edge/worker_notify.py's).

Each worker speaks the notify protocol (gateway/core/sd_notify.py) to a socket of the
supervisor's own, exactly as it would to systemd. The supervisor, the unit's main
process, says `READY=1` once every worker has said it (each worker says it once
its listeners are bound and its stores open); on SIGHUP it says `RELOADING=1`, passes
the signal to the workers that are serving, and says `READY=1` again when each of
them has; on SIGTERM it says `STOPPING=1`. Under a watchdog each worker is given the
same interval; a serving worker silent for longer is wedged, and the supervisor
kills it (it is then restarted like any worker that died), so one wedged event loop
costs one worker a restart, not the whole service.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.core import sd_notify


class Phase(enum.StrEnum):
    GONE = "gone"  # not running (before the first spawn, after an exit)
    STARTING = "starting"
    READY = "ready"
    RELOADING = "reloading"
    STOPPING = "stopping"


@dataclass
class _Worker:
    phase: Phase = Phase.GONE
    last_ping: float = 0.0  # when it last showed its event loop turns (READY or WATCHDOG)


class WorkerFleet:
    def __init__(self, count: int, watchdog_seconds: float | None) -> None:
        self._workers = [_Worker() for _ in range(count)]
        self._watchdog = watchdog_seconds
        self._announced = False  # READY=1 said for the start, or for the last reload
        self._stopping = False

    @property
    def watchdog_seconds(self) -> float | None:
        return self._watchdog

    def phase(self, index: int) -> Phase:
        return self._workers[index].phase

    def spawned(self, index: int, now: float) -> None:
        self._workers[index] = _Worker(Phase.STARTING, now)

    def exited(self, index: int) -> None:
        self._workers[index].phase = Phase.GONE

    def received(self, index: int, fields: Mapping[str, str], now: float) -> dict[str, str]:
        """A worker's datagram; returns what to tell the manager now (maybe nothing)."""
        worker = self._workers[index]
        if worker.phase is Phase.GONE:
            return {}  # a late datagram from a worker that has exited
        if fields.get("WATCHDOG") == "1":
            worker.last_ping = now
        if fields.get("STOPPING") == "1":
            worker.phase = Phase.STOPPING
        elif fields.get("RELOADING") == "1":
            worker.phase = Phase.RELOADING
        elif fields.get("READY") == "1":
            worker.phase = Phase.READY
            worker.last_ping = now
        return self._announcement()

    def reload_requested(self, monotonic_usec: int) -> tuple[list[int], dict[str, str]]:
        """SIGHUP: the workers to pass it to (those serving), and what to tell the manager.

        A worker still starting loads the current files anyway, and has no handler
        for SIGHUP yet.
        """
        serving = [i for i, w in enumerate(self._workers) if w.phase is Phase.READY]
        for index in serving:
            self._workers[index].phase = Phase.RELOADING
        self._announced = False
        return serving, sd_notify.reloading(monotonic_usec, self.status_line())

    def stop_requested(self) -> dict[str, str]:
        self._stopping = True
        return sd_notify.stopping(self.status_line())

    def overdue(self, now: float) -> list[int]:
        """Serving workers that have not pinged within the watchdog interval: wedged."""
        if self._watchdog is None:
            return []
        return [
            i
            for i, w in enumerate(self._workers)
            if w.phase in (Phase.READY, Phase.RELOADING) and now - w.last_ping > self._watchdog
        ]

    def heartbeat(self) -> dict[str, str]:
        """The supervisor's own periodic message: its loop turns, and the fleet's state."""
        fields = sd_notify.status(self.status_line())
        if self._watchdog is not None:
            fields.update(sd_notify.watchdog())
        return fields

    def status_line(self) -> str:
        counts: dict[Phase, int] = {}
        for worker in self._workers:
            counts[worker.phase] = counts.get(worker.phase, 0) + 1
        ready = counts.get(Phase.READY, 0)
        others = ", ".join(
            f"{n} {phase.value}" for phase, n in counts.items() if phase is not Phase.READY
        )
        line = f"{ready} of {len(self._workers)} workers ready"
        return f"{line} ({others})" if others else line

    def _announcement(self) -> dict[str, str]:
        if self._stopping or self._announced:
            return {}
        if all(w.phase is Phase.READY for w in self._workers):
            self._announced = True
            return sd_notify.ready(self.status_line())
        return {}
