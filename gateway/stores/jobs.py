"""The jobs journal: acknowledged asynchronous requests (CV 1/3/5/7) not yet answered.

`put` returns once the job is durable (the I99 goes out after it); `next_job` hands this
node a job to run, by priority class (the device `Priority`: lower first, then arrival);
`done` once its response is stored in the outbox. A job handed out and not done comes
back: after a restart (SQLite) or, on Redis, on a live node once its node stopped renewing
(gateway/stores/jobs_redis.py). Such a job has `repeated=True` and is counted in
`duisgw_redeliveries_total{queue="jobs"}`: its response may already be stored, and the
outbox refuses it a second time by its message ID.

Backends: `SqliteJobs` (one node: rows in `jobs.sqlite` through the outbox's group commit,
handed out from a bounded buffer in memory) and `RedisJobs` (one stream per priority class,
a consumer group).
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final, Protocol

import msgspec
import trio

from gateway.core.clock import Clock
from gateway.stores.outbox import OutboundMessage, Outbox, open_outbox
from gateway.stores.redis_streams import StreamMetrics
from gateway.stores.sqlite import Synchronous

PRIORITY_CLASSES: Final = 4  # gateway.core.device.Priority: 0 (critical) .. 3 (scheduled)
LOCAL_JOBS: Final = 10_000  # jobs buffered in memory and not yet taken (SQLite backend)
RECOVERY_PAGE: Final = 1000
# Jobs-journal rows are not delivered anywhere: their url keeps the priority class
# ("job:2"), so a job read back from the journal keeps its place. "job:" (older rows): 0.
JOB_URL: Final = "job:"


def job_url(priority: int) -> str:
    return f"{JOB_URL}{priority_class(priority)}"


def class_of_url(url: str) -> int:
    tail = url.removeprefix(JOB_URL)
    return priority_class(int(tail)) if tail.isdigit() else 0


class JobEntry(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str  # the RequestID
    body: bytes  # the signed request, byte for byte
    priority: int  # 0 .. PRIORITY_CLASSES - 1, lower first
    repeated: bool = False  # handed out before: it may have run already


class JobStore(Protocol):
    def pending_count(self) -> int: ...

    async def put(
        self, job_id: str, user_id: str, body: bytes, created_at: dt.datetime, priority: int
    ) -> None: ...

    async def next_job(self) -> JobEntry: ...

    async def done(self, job_id: str) -> None: ...

    async def contains(self, job_id: str) -> bool: ...


class JobsFull(Exception):
    """The deployment's jobs journal holds as many jobs as it may: the request is refused
    (nothing journaled, nothing acknowledged) rather than kept waiting."""


def priority_class(priority: int) -> int:
    return min(max(int(priority), 0), PRIORITY_CLASSES - 1)


class PriorityBuffer:
    """Jobs waiting for a worker on this node: lowest class first, then first in."""

    def __init__(self, capacity: int = LOCAL_JOBS) -> None:
        self._heap: list[tuple[int, int, JobEntry]] = []
        self._order = itertools.count()
        self._capacity = capacity
        self._not_empty = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def room(self) -> int:
        return max(0, self._capacity - len(self._heap))

    def push_nowait(self, entry: JobEntry) -> None:
        """Add; callers keep to `room` (jobs taken over may go beyond, bounded by what a
        node held)."""
        heapq.heappush(self._heap, (entry.priority, next(self._order), entry))
        self._not_empty.unpark()

    async def pop(self) -> JobEntry:
        await trio.lowlevel.checkpoint()
        while not self._heap:
            await self._not_empty.park()
        entry = heapq.heappop(self._heap)[2]
        if self._heap:
            self._not_empty.unpark()  # a waiter parked beside us may take the next
        return entry


class SqliteJobs:
    """The embedded backend: a SQLite journal (an `Outbox` of job rows) and a buffer.

    `put` never waits for room: once the buffer is full, a job stays in the journal only
    (spilled), so a slow estate piles work up on disk, not in memory, and the User's
    acknowledgement does not wait for the devices. `next_job` reads spilled jobs back
    from the journal, in arrival order a page at a time, as the buffer empties; the buffer
    orders what it holds by priority class.
    """

    def __init__(
        self,
        journal: Outbox,
        metrics: StreamMetrics | None = None,
        *,
        capacity: int = LOCAL_JOBS,
    ) -> None:
        self._journal = journal
        self._buffer = PriorityBuffer(capacity)
        self._metrics = metrics
        # Job IDs buffered or handed out and not done: a refill skips them.
        self._held: set[str] = set()
        self._spilled = False  # the journal holds pending jobs not in `_held`
        self._spilled_puts = 0  # puts that went to the journal only (a refill's race check)
        self._cursor = 0  # the journal row id a refill has read up to
        self._repeated_through = 0  # rows up to this id were journaled before this start
        self._refill_lock = trio.Lock()
        self._refill_at = max(1, min(RECOVERY_PAGE, capacity // 2))

    @property
    def spilled(self) -> bool:
        return self._spilled

    @property
    def buffered(self) -> int:
        """Jobs held in memory waiting to be taken (at most the capacity)."""
        return len(self._buffer)

    def pending_count(self) -> int:
        return self._journal.pending_count()

    async def put(
        self, job_id: str, user_id: str, body: bytes, created_at: dt.datetime, priority: int
    ) -> None:
        await self._journal.put(
            OutboundMessage(
                message_id=job_id,
                user_id=user_id,
                url=job_url(priority),
                body=body,
                created_at=created_at,
            )
        )
        if self._spilled or not self._buffer.room:
            # Later jobs spill too, so the journal's order is the order they come back in.
            self._spilled = True
            self._spilled_puts += 1
            return
        self._held.add(job_id)
        self._buffer.push_nowait(
            JobEntry(job_id=job_id, body=body, priority=priority_class(priority))
        )

    async def next_job(self) -> JobEntry:
        if self._spilled and (self._buffer.room >= self._refill_at or not len(self._buffer)):
            await self._refill()
        return await self._buffer.pop()

    async def done(self, job_id: str) -> None:
        await self._journal.mark_delivered(job_id)
        self._held.discard(job_id)

    async def _refill(self) -> None:
        """Buffer spilled jobs from the journal while there is room; clear `_spilled`
        once a read finds none left and no put spilled meanwhile."""
        async with self._refill_lock:
            while self._spilled and self._buffer.room:
                spilled_before = self._spilled_puts
                limit = min(RECOVERY_PAGE, self._buffer.room)
                page = await self._journal.pending(after_id=self._cursor, limit=limit)
                for stored in page:
                    self._cursor = stored.id
                    if stored.message_id in self._held:
                        continue
                    self._held.add(stored.message_id)
                    self._buffer.push_nowait(
                        JobEntry(
                            job_id=stored.message_id,
                            body=stored.body,
                            priority=class_of_url(stored.url),
                            repeated=stored.id <= self._repeated_through,
                        )
                    )
                if len(page) < limit and self._spilled_puts == spilled_before:
                    self._spilled = False

    async def contains(self, job_id: str) -> bool:
        return await self._journal.get(job_id) is not None

    async def recover(self) -> int:
        """Hand out again the jobs journaled before a restart and not done, each with the
        class its row keeps; beyond the buffer's room they wait in the journal."""
        recovered = self._journal.pending_count()
        if recovered:
            newest = 0
            while page := await self._journal.pending(after_id=newest, limit=RECOVERY_PAGE):
                newest = page[-1].id
            self._repeated_through = newest
            self._spilled = True
            await self._refill()
        if recovered and self._metrics is not None:
            self._metrics.redeliveries.labels(queue="jobs").inc(recovered)
        return recovered


@asynccontextmanager
async def open_sqlite_jobs(
    path: Path,
    *,
    clock: Clock | None = None,
    metrics: StreamMetrics | None = None,
    synchronous: Synchronous = "FULL",
) -> AsyncIterator[SqliteJobs]:
    async with open_outbox(path, clock=clock, synchronous=synchronous) as journal:
        jobs = SqliteJobs(journal, metrics)
        await jobs.recover()
        yield jobs
