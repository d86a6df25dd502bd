"""Idle plain-TCP connections held without a task: one watcher, an epoll set, deadlines.

A connection waiting for its next request, or for its first, is most of what a crowd
of idle sockets is. Waiting in its own task it keeps some 50 objects the garbage
collector tracks (a coroutine per frame from the handler down to trio's epoll wait,
cancel scopes, the parser and its bound callbacks). bench.soak's crowd churns a
thousand of them (each idle socket is reclaimed for a newcomer within seconds), so
every young and middle collection walked them: a census at a middle collection beside
the crowd found 57,000-61,000 objects and a 42-47 ms pause, against 5,000-20,000 alone.
Parked here, an idle connection is its socket in one epoll set and an entry in a dict:
data (or EOF) hands it back to a new task, its deadline or a newcomer's reclaim closes
it from here.

Linux only (select.epoll, registered as one descriptor with trio's own I/O manager);
elsewhere `IdleParking.available` is False and connections wait in their tasks.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import select
from collections.abc import Callable
from typing import Final, Generic, TypeVar

import trio

_T = TypeVar("_T")

# Ready descriptors taken per wake-up; more wait for the next round (level-triggered).
MAX_EVENTS_PER_WAKE: Final = 256


class IdleParking(Generic[_T]):
    """Descriptors waiting to become readable, each with a deadline, watched by `run`.

    `resume(item)`: its descriptor is readable (data or EOF); `expire(item)`: its deadline
    passed; `discard(item)`: the watcher is stopping. Each is called once per parked item
    and only after the descriptor has left the epoll set, so the callee may close it.
    """

    available: Final = hasattr(select, "epoll")

    def __init__(
        self,
        resume: Callable[[_T], None],
        expire: Callable[[_T], None],
        discard: Callable[[_T], None],
    ) -> None:
        self._resume = resume
        self._expire = expire
        self._discard = discard
        self._epoll: select.epoll | None = None
        self._parked: dict[int, tuple[_T, int]] = {}  # fd -> (item, sequence number)
        # (deadline, sequence number, fd); an entry whose number no longer matches the
        # parked one is stale (resumed or evicted) and skipped when it comes up.
        self._deadlines: list[tuple[float, int, int]] = []
        self._sequence = 0
        self._sleep: trio.CancelScope | None = None

    @property
    def running(self) -> bool:
        return self._epoll is not None

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, fd: int, item: _T, deadline: float) -> bool:
        """Hold `item` until `fd` is readable or `deadline` (trio time); False if not running."""
        epoll = self._epoll
        if epoll is None or fd in self._parked:
            return False
        epoll.register(fd, select.EPOLLIN)
        self._sequence += 1
        self._parked[fd] = (item, self._sequence)
        heapq.heappush(self._deadlines, (deadline, self._sequence, fd))
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline
        return True

    def evict(self, fd: int) -> _T | None:
        """Take `fd`'s item out (none of the callbacks runs for it); None if not parked."""
        entry = self._parked.pop(fd, None)
        if entry is None:
            return None
        if self._epoll is not None:
            # A descriptor closed under us has left the set with its close already.
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
        return entry[0]

    async def run(self) -> None:
        """Watch until cancelled; then every item still parked is discarded."""
        if not self.available or self._epoll is not None:
            return
        epoll = self._epoll = select.epoll()
        try:
            while True:
                with trio.CancelScope(deadline=self._next_deadline()) as self._sleep:
                    await trio.lowlevel.wait_readable(epoll.fileno())
                self._sleep = None
                for fd, _events in epoll.poll(0, MAX_EVENTS_PER_WAKE):
                    item = self.evict(fd)
                    if item is not None:
                        self._resume(item)
                self._expire_due(trio.current_time())
        finally:
            self._sleep = None
            for fd in list(self._parked):
                item = self.evict(fd)
                if item is not None:
                    self._discard(item)
            self._epoll = None
            self._deadlines.clear()
            epoll.close()

    def _next_deadline(self) -> float:
        deadlines = self._deadlines
        while deadlines and not self._current(deadlines[0]):
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else math.inf

    def _expire_due(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            entry = heapq.heappop(deadlines)
            if self._current(entry) and (item := self.evict(entry[2])) is not None:
                self._expire(item)

    def _current(self, deadline_entry: tuple[float, int, int]) -> bool:
        """False for a stale entry: its item was resumed or evicted (maybe parked anew)."""
        _deadline, sequence, fd = deadline_entry
        parked = self._parked.get(fd)
        return parked is not None and parked[1] == sequence
