"""The jobs journal: acknowledged asynchronous requests (CV 1/3/5/7) not yet answered.

`put` returns once the job is durable (the I99 goes out after it); `next_job` hands this
node a job to run, by priority class (the device `Priority`: lower first, then arrival);
`done` once its response is stored in the outbox. A job handed out and not done comes
back: after a restart (SQLite) or, on Redis, on a live node once its node stopped renewing
(gateway/stores/jobs_redis.py). Such a job has `repeated=True` and is counted in
`duisgw_redeliveries_total{queue="jobs"}`: its response may already be stored, and the
outbox refuses it a second time by its message ID.

Backends: `SqliteJobs` (one node: rows in `jobs.sqlite` through the outbox's group commit,
handed out from memory) and `RedisJobs` (one stream per priority class, a consumer group).
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
LOCAL_JOBS: Final = 10_000  # jobs handed to this node and not yet taken; put waits beyond
RECOVERY_PAGE: Final = 1000
JOB_URL: Final = "job:"  # jobs-journal rows are not delivered anywhere


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


def priority_class(priority: int) -> int:
    return min(max(int(priority), 0), PRIORITY_CLASSES - 1)


class PriorityBuffer:
    """Jobs waiting for a worker on this node: lowest class first, then first in."""

    def __init__(self, capacity: int = LOCAL_JOBS) -> None:
        self._heap: list[tuple[int, int, JobEntry]] = []
        self._order = itertools.count()
        self._capacity = capacity
        self._not_empty = trio.lowlevel.ParkingLot()
        self._not_full = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def room(self) -> int:
        return max(0, self._capacity - len(self._heap))

    async def push(self, entry: JobEntry) -> None:
        """Wait while full (backpressure on the producer), then add."""
        await trio.lowlevel.checkpoint()
        while len(self._heap) >= self._capacity:
            await self._not_full.park()
        self.push_nowait(entry)

    def push_nowait(self, entry: JobEntry) -> None:
        """Add beyond the capacity: for jobs taken over, bounded by what a node held."""
        heapq.heappush(self._heap, (entry.priority, next(self._order), entry))
        self._not_empty.unpark()

    async def pop(self) -> JobEntry:
        await trio.lowlevel.checkpoint()
        while not self._heap:
            await self._not_empty.park()
        entry = heapq.heappop(self._heap)[2]
        self._not_full.unpark()
        if self._heap:
            self._not_empty.unpark()  # a waiter parked beside us may take the next
        return entry


class SqliteJobs:
    """The embedded backend: a SQLite journal (an `Outbox` of job rows) and a buffer."""

    def __init__(self, journal: Outbox, metrics: StreamMetrics | None = None) -> None:
        self._journal = journal
        self._buffer = PriorityBuffer()
        self._metrics = metrics

    def pending_count(self) -> int:
        return self._journal.pending_count()

    async def put(
        self, job_id: str, user_id: str, body: bytes, created_at: dt.datetime, priority: int
    ) -> None:
        await self._journal.put(
            OutboundMessage(
                message_id=job_id, user_id=user_id, url=JOB_URL, body=body, created_at=created_at
            )
        )
        entry = JobEntry(job_id=job_id, body=body, priority=priority_class(priority))
        await self._buffer.push(entry)

    async def next_job(self) -> JobEntry:
        return await self._buffer.pop()

    async def done(self, job_id: str) -> None:
        await self._journal.mark_delivered(job_id)

    async def contains(self, job_id: str) -> bool:
        return await self._journal.get(job_id) is not None

    async def recover(self) -> int:
        """Hand out again the jobs journaled before a restart and not done. The journal
        does not keep their class: they are rebuilt from the request, so they go first."""
        after = recovered = 0
        while page := await self._journal.pending(after_id=after, limit=RECOVERY_PAGE):
            for stored in page:
                after = stored.id
                self._buffer.push_nowait(
                    JobEntry(job_id=stored.message_id, body=stored.body, priority=0, repeated=True)
                )
                recovered += 1
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
