"""Prioritised, bounded, fair command queues per Communications Hub (SEC H3.27).

The consultation (¶130, SEC H3.27) lets the DCC prioritise Commands to Communications
Hub Functions. A CHF handles one command at a time, so under overload the order in which
a hub's commands start decides whether a prepayment top-up waits behind a thousand bulk
reads. Here every hub has one queue per Priority class, served strictly in class order
(PREPAYMENT_AND_CRITICAL, ON_DEMAND, FUTURE_DATED, DCC_SCHEDULED); within a class the
Users (RequestID originators) take turns, round robin, so one User's bulk cannot starve
another's; within one User the order is first come, first served.

Two layers:

- `CommandQueue`: the ordering policy for one hub, sans-IO (`push`, `pop_next(now)`,
  `remove`). Times are plain floats; a command with a `ready_at` in the future is held
  aside and joins its class only once `now` reaches it, without blocking anything else.
- `HubQueues`: the trio edge. `slot(hub_id, ...)` is an async context manager: it queues
  the command, waits for one of the hub's `capacity` service slots, and holds it while the
  caller talks to the device. The waiting task is its own worker: there is no background
  task to start, so nothing is orphaned, and cancelling a request (its deadline, shutdown)
  takes it out of the queue or frees its slot on the way out.

Limits are per hub and per class, and per User within a class, so a full class refuses
with `QueueFull` at once (the caller answers the User) instead of queueing without end;
every wait carries a deadline and ends in `QueueTimeout` when it passes.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from gateway.core.device import Priority
from gateway.core.simulator_config import QueueLimits
from gateway.edge.metrics import Metrics
from gateway.edge.transport import QueueFull
from mmc.identifiers import Eui64

__all__ = [
    "DEFAULT_HUB_CAPACITY",
    "CommandQueue",
    "Entry",
    "HubQueues",
    "QueueTimeout",
]

# A CHF processes one command at a time (GBCS); more slots model a CSP that pipelines.
DEFAULT_HUB_CAPACITY = 1
_PRIORITIES = tuple(sorted(Priority))

T = TypeVar("T")


class QueueTimeout(Exception):
    """The command did not reach the hub before its deadline; it has left the queue."""


@dataclass(eq=False, slots=True)
class Entry(Generic[T]):
    """One queued command. Identity, not value, is what `remove` matches."""

    value: T
    priority: Priority
    originator: Eui64
    enqueued_at: float
    ready_at: float
    deferred: bool  # True while held aside until ready_at


class CommandQueue(Generic[T]):
    """The ordering policy for one hub: strict priority, round robin by User within a
    class, FIFO within a User; future entries join their class when `now` reaches them."""

    __slots__ = ("_counts", "_deferred", "_limits", "_ready", "_seq", "_user_counts")

    def __init__(self, limits: QueueLimits | None = None) -> None:
        self._limits = limits if limits is not None else QueueLimits()
        # Per class: User -> that User's entries. The dict's order is the rotation: the
        # User served goes to the back (re-inserted) while it still has entries.
        self._ready: dict[Priority, dict[Eui64, deque[Entry[T]]]] = {p: {} for p in _PRIORITIES}
        self._deferred: list[tuple[float, int, Entry[T]]] = []
        self._seq = itertools.count()
        self._counts = dict.fromkeys(_PRIORITIES, 0)
        self._user_counts: dict[tuple[Priority, Eui64], int] = {}

    def push(
        self,
        value: T,
        *,
        priority: Priority,
        originator: Eui64,
        now: float,
        ready_at: float | None = None,
        hub_id: Eui64 = "",
    ) -> Entry[T]:
        """Queue a command; QueueFull when its class or its User's share is full."""
        limits = self._limits
        if self._counts[priority] >= limits.max_queued_per_class:
            raise QueueFull(hub_id, priority, originator, "class", limits.max_queued_per_class)
        user_key = (priority, originator)
        user_count = self._user_counts.get(user_key, 0)
        if user_count >= limits.max_queued_per_user_per_class:
            raise QueueFull(
                hub_id, priority, originator, "user", limits.max_queued_per_user_per_class
            )
        start = now if ready_at is None or ready_at <= now else ready_at
        entry = Entry(value, priority, originator, now, start, deferred=start > now)
        if entry.deferred:
            heapq.heappush(self._deferred, (entry.ready_at, next(self._seq), entry))
        else:
            self._append(entry)
        self._counts[priority] += 1
        self._user_counts[user_key] = user_count + 1
        return entry

    def pop_next(self, now: float) -> Entry[T] | None:
        """The entry to serve next at `now`, taken off the queue; None if none is ready."""
        while self._deferred and self._deferred[0][0] <= now:
            entry = heapq.heappop(self._deferred)[2]
            entry.deferred = False
            self._append(entry)
        for priority in _PRIORITIES:
            users = self._ready[priority]
            if not users:
                continue
            originator = next(iter(users))
            mine = users.pop(originator)
            entry = mine.popleft()
            if mine:
                users[originator] = mine  # to the back of the rotation
            self._forget(entry)
            return entry
        return None

    def remove(self, entry: Entry[T]) -> bool:
        """Take a waiting entry out (its caller gave up); False if it is not queued.
        Linear in the User's queue: it only runs on cancellation and timeouts."""
        if entry.deferred:
            index = next((i for i, item in enumerate(self._deferred) if item[2] is entry), None)
            if index is None:
                return False
            self._deferred[index] = self._deferred[-1]
            self._deferred.pop()
            heapq.heapify(self._deferred)
        else:
            users = self._ready[entry.priority]
            mine = users.get(entry.originator)
            if mine is None or not any(item is entry for item in mine):
                return False
            mine.remove(entry)
            if not mine:
                del users[entry.originator]
        self._forget(entry)
        return True

    def next_ready_at(self) -> float | None:
        """When the earliest held-aside entry becomes ready (for a caller's timer)."""
        return self._deferred[0][0] if self._deferred else None

    def depth(self, priority: Priority) -> int:
        return self._counts[priority]

    def __len__(self) -> int:
        return sum(self._counts.values())

    def _append(self, entry: Entry[T]) -> None:
        users = self._ready[entry.priority]
        mine = users.get(entry.originator)
        if mine is None:
            users[entry.originator] = mine = deque()
        mine.append(entry)

    def _forget(self, entry: Entry[T]) -> None:
        self._counts[entry.priority] -= 1
        user_key = (entry.priority, entry.originator)
        left = self._user_counts[user_key] - 1
        if left:
            self._user_counts[user_key] = left
        else:
            del self._user_counts[user_key]


@dataclass(eq=False, slots=True)
class _Ticket:
    granted: trio.Event = field(default_factory=trio.Event)
    entry: Entry[_Ticket] | None = None
    waited_seconds: float = 0.0  # from ready to granted


@dataclass(eq=False, slots=True)
class _Hub:
    queue: CommandQueue[_Ticket]
    busy: int = 0


class HubQueues:
    """Admission to each hub's `capacity` service slots in CommandQueue order (trio)."""

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_HUB_CAPACITY,
        limits: QueueLimits | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("hub capacity must be at least 1")
        self.capacity = capacity
        self._limits = limits if limits is not None else QueueLimits()
        self._hubs: dict[Eui64, _Hub] = {}  # only hubs with queued or in-service commands
        # Label children bound once, off the hot path; the label set is the four classes.
        self._depth = self._wait = None
        if metrics is not None:
            self._depth = {p: metrics.queue_depth.labels(p.name.lower()) for p in _PRIORITIES}
            self._wait = {p: metrics.queue_wait.labels(p.name.lower()) for p in _PRIORITIES}

    @asynccontextmanager
    async def slot(
        self,
        hub_id: Eui64,
        *,
        priority: Priority,
        originator: Eui64,
        ready_at: float | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[float]:
        """Queue for one of the hub's slots; yields the seconds waited once ready, and
        frees the slot on exit. QueueFull at once when the class is full; QueueTimeout
        when `deadline` (trio time) passes first. `ready_at` (trio time) holds the
        command aside until then without blocking the hub for others."""
        hub = self._hubs.get(hub_id)
        if hub is None:
            hub = self._hubs[hub_id] = _Hub(CommandQueue(self._limits))
        ticket = _Ticket()
        now = trio.current_time()
        try:
            ticket.entry = hub.queue.push(
                ticket,
                priority=priority,
                originator=originator,
                now=now,
                ready_at=ready_at,
                hub_id=hub_id,
            )
        except QueueFull:
            self._drop_if_idle(hub_id, hub)
            raise
        if self._depth is not None:
            self._depth[priority].inc()
        self._pump(hub_id, hub)
        entered = False
        try:
            entered = await self._wait_for_grant(hub_id, hub, ticket, deadline)
        finally:
            if not entered:
                self._abandon(hub_id, hub, ticket)
        if not entered:
            raise QueueTimeout(f"hub {hub_id}: {priority.name} command not started by its deadline")
        try:
            yield ticket.waited_seconds
        finally:
            self._release(hub_id, hub)

    def depth(self, priority: Priority | None = None) -> int:
        """Commands waiting across all hubs (of one class, or all)."""
        if priority is None:
            return sum(len(hub.queue) for hub in self._hubs.values())
        return sum(hub.queue.depth(priority) for hub in self._hubs.values())

    def in_service(self, hub_id: Eui64) -> int:
        hub = self._hubs.get(hub_id)
        return hub.busy if hub is not None else 0

    async def _wait_for_grant(
        self, hub_id: Eui64, hub: _Hub, ticket: _Ticket, deadline: float | None
    ) -> bool:
        entry = ticket.entry
        assert entry is not None
        end = float("inf") if deadline is None else deadline
        while not ticket.granted.is_set():
            # A held-aside command wakes at its ready time to put itself forward: its own
            # task is its timer, so no background task is needed for future-dated work.
            # Once it is ready, a busy hub's next release pumps it like any other.
            ready_later = entry.deferred and entry.ready_at > trio.current_time()
            wake_at = min(end, entry.ready_at) if ready_later else end
            with trio.move_on_at(wake_at):
                await ticket.granted.wait()
            if ticket.granted.is_set():
                break
            if trio.current_time() >= end:
                return False
            self._pump(hub_id, hub)
        return True

    def _pump(self, hub_id: Eui64, hub: _Hub) -> None:
        """Grant free slots to the next ready commands, in policy order."""
        now = trio.current_time()
        while hub.busy < self.capacity:
            entry = hub.queue.pop_next(now)
            if entry is None:
                return
            hub.busy += 1
            ticket = entry.value
            ticket.waited_seconds = now - max(entry.enqueued_at, entry.ready_at)
            if self._depth is not None and self._wait is not None:
                self._depth[entry.priority].dec()
                self._wait[entry.priority].observe(ticket.waited_seconds)
            ticket.granted.set()

    def _abandon(self, hub_id: Eui64, hub: _Hub, ticket: _Ticket) -> None:
        """The caller left (timeout, cancellation): give back what it held."""
        if ticket.granted.is_set():
            self._release(hub_id, hub)  # granted while being cancelled: pass the slot on
            return
        entry = ticket.entry
        if entry is not None and hub.queue.remove(entry) and self._depth is not None:
            self._depth[entry.priority].dec()
        self._drop_if_idle(hub_id, hub)

    def _release(self, hub_id: Eui64, hub: _Hub) -> None:
        hub.busy -= 1
        self._pump(hub_id, hub)
        self._drop_if_idle(hub_id, hub)

    def _drop_if_idle(self, hub_id: Eui64, hub: _Hub) -> None:
        # Keeps memory proportional to the hubs with work, not to the estate.
        if hub.busy == 0 and not len(hub.queue) and self._hubs.get(hub_id) is hub:
            del self._hubs[hub_id]
