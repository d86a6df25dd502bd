"""The jobs journal on Redis Streams: every node puts, every node runs.

One stream per priority class (`<prefix>:jobs:{q}:c0` .. `c3`, one hash tag so a script
and one XREADGROUP may touch them all, on a Cluster too) and one consumer group, `workers`.
An entry carries the job (MessagePack); `<prefix>:jobs:{q}:j:<RequestID>` marks it as
journaled (`contains`, the duplicate check of `put`) until it is done.

- `put`: one script (refuse a RequestID already journaled, XADD, mark), then `durable`.
- Reading: XREADGROUP over the four streams, no more than this node has room for, handed
  out lowest class first (`next_job`).
- Leases: an entry read and not done is in this consumer's pending list. Every
  `lease_seconds / 3` the node resets the idle time of the entries it holds (XCLAIM to
  itself, JUSTID); every `lease_seconds / 2` it takes over (XAUTOCLAIM) entries idle for
  longer than `lease_seconds`: a node that died, or was cut off from Redis that long.
  Those are `repeated` and counted.
- `done`: XACK, XDEL and unmark in one script.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Final

import msgspec
import trio

from gateway.stores.jobs import (
    PRIORITY_CLASSES,
    JobEntry,
    JobsFull,
    PriorityBuffer,
    priority_class,
)
from gateway.stores.outbox import DuplicateMessageId
from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis
from gateway.stores.redis_streams import (
    RETRY_PAUSE_SECONDS,
    StreamMetrics,
    call,
    consumer_name,
    ensure_group,
    forget_gone_consumers,
    text,
)
from gateway.stores.times import to_us

log = logging.getLogger("duisgw.jobs")

GROUP: Final = "workers"
READ_BATCH: Final = 256  # entries per XREADGROUP at most
READ_BLOCK_MS: Final = 1000  # below the client's stream timeout
CLAIM_BATCH: Final = 256
LOCAL_ROOM: Final = 512  # jobs read and not yet taken by a worker, on this node
DEPTH_REFRESH_SECONDS: Final = 1.0
# Jobs journaled and not done, deployment-wide (Redis holds them in memory), beyond which
# `put` refuses the request (JobsFull: a 503 the User can retry) until the depth, read
# every DEPTH_REFRESH_SECONDS, falls. Refused at once: a User's request never hangs.
MAX_PENDING_JOBS: Final = 100_000

_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local entry = redis.call('XADD', KEYS[2], '*', 'j', ARGV[1], 'r', ARGV[2])
redis.call('HSET', KEYS[1], 'entry', entry, 'class', ARGV[3])
return entry
"""
_DONE = """
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return redis.call('DEL', KEYS[1])
"""


class _Record(msgspec.Struct, frozen=True, array_like=True):
    job_id: str
    user_id: str
    created_at_us: int
    priority: int
    body: bytes


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(_Record)


class RedisJobs:
    """Create, then run `run` in a nursery for as long as jobs are put or taken."""

    def __init__(
        self,
        shared: SharedRedis,
        *,
        lease_seconds: float,
        metrics: StreamMetrics | None = None,
        consumer: str | None = None,
        max_pending: int = MAX_PENDING_JOBS,
    ) -> None:
        self._shared = shared
        self._client: Any = shared.client
        self._lease_ms = round(lease_seconds * 1000)
        self._metrics = metrics
        self.consumer = consumer or consumer_name()
        self._streams = [shared.keys.of("jobs", "q", f"c{k}") for k in range(PRIORITY_CLASSES)]
        self._put = self._client.register_script(_PUT)
        self._done = self._client.register_script(_DONE)
        self._buffer = PriorityBuffer(capacity=LOCAL_ROOM)
        self._room = trio.lowlevel.ParkingLot()
        self._held: dict[str, tuple[int, str]] = {}  # job_id -> (class, entry): ours, not done
        self._depth = 0
        self._max_pending = max_pending

    def _marker(self, job_id: str) -> str:
        return self._shared.keys.of("jobs", "q", "j", job_id)

    # -- the JobStore protocol -------------------------------------------------------

    def pending_count(self) -> int:
        """Journaled and not done, on every node (refreshed about once a second)."""
        return self._depth

    async def put(
        self, job_id: str, user_id: str, body: bytes, created_at: dt.datetime, priority: int
    ) -> None:
        if self._depth >= self._max_pending:
            raise JobsFull(
                f"{self._depth:,} jobs wait for the device estate (limit {self._max_pending:,})"
            )
        cls = priority_class(priority)
        record = _Record(job_id, user_id, to_us(created_at), cls, body)
        keys = [self._marker(job_id), self._streams[cls]]
        entry = await call(
            self._shared,
            self._put(keys=keys, args=[job_id, _ENCODER.encode(record), cls]),
            durable=True,
        )
        if entry is None:
            raise DuplicateMessageId(f"job {job_id!r} is already journaled")

    async def next_job(self) -> JobEntry:
        entry = await self._buffer.pop()
        self._room.unpark()
        return entry

    async def done(self, job_id: str) -> None:
        held = self._held.get(job_id)
        if held is None:  # not handed to us (a job rebuilt twice): find it
            found = await call(self._shared, self._client.hgetall(self._marker(job_id)))
            if not found:
                return
            held = (int(found[b"class"]), text(found[b"entry"]))
        cls, entry = held
        keys = [self._marker(job_id), self._streams[cls]]
        await call(self._shared, self._done(keys=keys, args=[GROUP, entry]))
        self._held.pop(job_id, None)

    async def contains(self, job_id: str) -> bool:
        return bool(await call(self._shared, self._client.exists([self._marker(job_id)])))

    # -- background --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_forever)
            nursery.start_soon(self._every, self._lease_ms / 3000, self._renew)
            nursery.start_soon(self._every, self._lease_ms / 2000, self._take_over)
            nursery.start_soon(self._every, DEPTH_REFRESH_SECONDS, self._refresh_depth)
            task_status.started()

    async def _every(self, seconds: float, step: Any) -> None:
        while True:
            try:
                await step()
            except REDIS_ERRORS as exc:
                log.warning("jobs: Redis failed (%s); retrying", exc or type(exc).__name__)
            await trio.sleep(seconds)

    async def _read_forever(self) -> None:
        ready = False
        while True:
            try:
                if not ready:
                    for stream in self._streams:
                        await ensure_group(self._client, stream, GROUP)
                    ready = True
                while self._buffer.room == 0:
                    await self._room.park()
                await self._read(min(READ_BATCH, self._buffer.room))
            except REDIS_ERRORS as exc:
                log.warning("jobs: reading failed (%s); retrying", exc or type(exc).__name__)
                await trio.sleep(RETRY_PAUSE_SECONDS)

    async def _read(self, count: int) -> None:
        reply = await self._client.xreadgroup(
            GROUP,
            self.consumer,
            {stream: ">" for stream in self._streams},
            count=count,
            block=READ_BLOCK_MS,
        )
        for stream, entries in (reply or {}).items():
            cls = self._streams.index(text(stream))
            for entry in entries:
                self._accept(cls, entry, repeated=False)

    def _accept(self, cls: int, entry: Any, *, repeated: bool) -> None:
        fields = entry.field_values
        try:
            record = _DECODER.decode(fields[b"r"])
        except (KeyError, msgspec.DecodeError) as exc:  # not ours, or a newer format
            log.error("jobs: entry %s unreadable (%s); left pending", text(entry.identifier), exc)
            return
        if record.job_id in self._held:
            return  # already ours (our lease lapsed and we took it back)
        self._held[record.job_id] = (cls, text(entry.identifier))
        self._buffer.push_nowait(
            JobEntry(job_id=record.job_id, body=record.body, priority=cls, repeated=repeated)
        )
        if repeated and self._metrics is not None:
            self._metrics.redeliveries.labels(queue="jobs").inc()

    async def _renew(self) -> None:
        """Reset the idle time of every entry this node holds, so none is taken over."""
        by_class: dict[int, list[str]] = {}
        for cls, entry in self._held.values():
            by_class.setdefault(cls, []).append(entry)
        for cls, entries in by_class.items():
            for start in range(0, len(entries), CLAIM_BATCH):
                batch = entries[start : start + CLAIM_BATCH]
                await self._client.xclaim(
                    self._streams[cls], GROUP, self.consumer, 0, batch, justid=True
                )

    async def _take_over(self) -> None:
        """Entries idle past the lease: their node stopped; run them here."""
        for cls, stream in enumerate(self._streams):
            await forget_gone_consumers(self._client, stream, GROUP, self.consumer)
            cursor = "0-0"
            while True:
                reply = await self._client.xautoclaim(
                    stream, GROUP, self.consumer, self._lease_ms, cursor, count=CLAIM_BATCH
                )
                cursor = text(reply[0])
                for entry in reply[1]:
                    self._accept(cls, entry, repeated=True)
                if cursor == "0-0":
                    break

    async def _refresh_depth(self) -> None:
        total = 0
        for stream in self._streams:
            total += int(await self._client.xlen(stream))
        self._depth = total
