"""The outbox on Redis Streams: any node stores, one node at a time delivers a partition.

A User ID maps to one of `partitions` partitions (CRC-32), each with its own hash tag
`{o<n>}`, so a script touches one partition's keys atomically on a Cluster too:

    <prefix>:outbox:{o<n>}:stream    one entry per pending message (XADD at put/retry)
    <prefix>:outbox:{o<n>}:seq       hash: User ID -> last sequence number given
    <prefix>:outbox:{o<n>}:m:<id>    hash: the message (MessagePack record, body, state,
                                     seq, attempts, last_error, finished, id, entry)
    <prefix>:outbox:{o<n>}:dead      zset of dead letters (score: id), for listings
    <prefix>:outbox:{o<n>}:done      zset of delivered messages (score: finished), to purge
    <prefix>:outbox:{o<n>}:lease     the node delivering the partition (SET PX)
    <prefix>:outbox:nodes            zset of live nodes (score: lease expiry, ms)

**Order per User and at least once.** Only the lease holder reads a partition (consumer
group `delivery`, consumer = this process). On taking a partition it first takes over
(XAUTOCLAIM) every entry the previous holder read and did not finish: those may have been
POSTed already, so they are counted as redeliveries; the receiver drops the duplicate by
its X-DUIS-Message-ID. Delivered or dead-lettered entries are XACKed and XDELed, so the
stream's length is the partition's pending depth. A lease not renewed within
`lease_seconds` (the node died or lost Redis) lets another node take the partition.

**Sharing the work.** Each node keeps `ceil(partitions / live nodes)` leases at most, and
gives up extra ones when nodes join, so the partitions spread over the nodes.

**Admin from any node.** Listings, retry and discard read and write Redis, not the view:
a retried dead letter is XADDed again and its lease holder's reader picks it up.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import coredis
import msgspec
import trio

from gateway.core.clock import Clock, SystemClock
from gateway.stores.outbox import (
    MAX_ERROR_CHARS,
    MAX_LIST_ROWS,
    MAX_PURGE_ROWS,
    DuplicateMessageId,
    NotDeadLettered,
    OutboundMessage,
    OutboxError,
    OutboxMetrics,
    UnknownMessage,
)
from gateway.stores.outbox_sqlite import MessageKind, StoredMessage
from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis
from gateway.stores.redis_streams import (
    RETRY_PAUSE_SECONDS,
    SEQ_BITS,
    StreamMetrics,
    call,
    consumer_name,
    ensure_group,
    entry_number,
    forget_gone_consumers,
    text,
)
from gateway.stores.times import from_us, to_us

log = logging.getLogger("duisgw.outbox")

GROUP: Final = "delivery"
READ_BATCH: Final = 256
READ_BLOCK_MS: Final = 1000  # below the client's stream timeout
CLAIM_BATCH: Final = 256
COUNTS_REFRESH_SECONDS: Final = 1.0
MAX_SCAN_ROWS: Final = 10_000  # entries an admin listing reads per partition at most
BYSCORE: Final = coredis.PureToken.BYSCORE

_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local seq = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local entry = redis.call('XADD', KEYS[3], '*', 'm', ARGV[2], 'u', ARGV[1], 's', seq)
redis.call('HSET', KEYS[1], 'rec', ARGV[3], 'body', ARGV[4], 'seq', seq, 'state', 'pending',
  'attempts', 0, 'entry', entry, 'id', entry)
return entry
"""
# KEYS: message, stream, done or dead zset; ARGV: group, new state, finished_us, error|''
_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return false end
local entry = redis.call('HGET', KEYS[1], 'entry')
redis.call('XACK', KEYS[2], ARGV[1], entry)
redis.call('XDEL', KEYS[2], entry)
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished', ARGV[3])
if ARGV[2] == 'delivered' then
  redis.call('HDEL', KEYS[1], 'body')
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
else
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'last_error', ARGV[4])
  local ms = string.match(redis.call('HGET', KEYS[1], 'id'), '^(%d+)')
  redis.call('ZADD', KEYS[3], ms, ARGV[5])
end
return 1
"""
_FAILED = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[1])
return 1
"""
# KEYS: message, stream, dead; ARGV: message id, 'retry' | 'discard'
_DEAD_LETTER_OP = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == false then return 'unknown' end
if state ~= 'dead' then return state end
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[2] == 'discard' then redis.call('DEL', KEYS[1]) return 'ok' end
local user = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'rec'))[2]
local seq = redis.call('HGET', KEYS[1], 'seq')
local entry = redis.call('XADD', KEYS[2], '*', 'm', ARGV[1], 'u', user, 's', seq)
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'entry', entry)
redis.call('HDEL', KEYS[1], 'finished')
return 'ok'
"""
_LEASE = """
local owner = redis.call('GET', KEYS[1])
if ARGV[3] == 'drop' then
  if owner == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class _Record(msgspec.Struct, frozen=True, array_like=True):
    """The immutable part of a message (MessagePack; array_like keeps it small)."""

    message_id: str
    user_id: str
    url: str
    kind: MessageKind
    content_type: str
    created_at_us: int


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(_Record)


def partition_of(user_id: str, partitions: int) -> int:
    return zlib.crc32(user_id.encode()) % partitions


class _View:
    """This node's pending messages in the partitions it holds, per User by sequence."""

    def __init__(self) -> None:
        self.users: dict[str, list[tuple[int, str]]] = {}  # insertion: first with work
        self.where: dict[str, tuple[int, str]] = {}  # message id -> (partition, user)

    def add(self, partition: int, user_id: str, seq: int, message_id: str) -> bool:
        if message_id in self.where:
            return False
        bisect.insort(self.users.setdefault(user_id, []), (seq, message_id))
        self.where[message_id] = (partition, user_id)
        return True

    def forget(self, message_id: str) -> None:
        found = self.where.pop(message_id, None)
        if found is None:
            return
        queue = self.users[found[1]]
        queue[:] = [item for item in queue if item[1] != message_id]
        if not queue:
            del self.users[found[1]]

    def drop_partition(self, partition: int) -> None:
        for message_id in [m for m, (p, _) in self.where.items() if p == partition]:
            self.forget(message_id)


class RedisOutbox:
    """Create, then run `run` in a nursery (it holds leases and reads partitions)."""

    def __init__(
        self,
        shared: SharedRedis,
        *,
        partitions: int,
        lease_seconds: float,
        clock: Clock | None = None,
        metrics: OutboxMetrics | None = None,
        stream_metrics: StreamMetrics | None = None,
        consumer: str | None = None,
    ) -> None:
        self._shared = shared
        self._client: Any = shared.client
        self._partitions = partitions
        self._lease_ms = round(lease_seconds * 1000)
        self._clock = clock if clock is not None else SystemClock()
        self._metrics = metrics
        self._stream_metrics = stream_metrics
        self.consumer = consumer or consumer_name()
        self._put_script = self._client.register_script(_PUT)
        self._finish = self._client.register_script(_FINISH)
        self._failed = self._client.register_script(_FAILED)
        self._dead_op = self._client.register_script(_DEAD_LETTER_OP)
        self._lease = self._client.register_script(_LEASE)
        self._view = _View()
        self._held: dict[int, trio.CancelScope] = {}
        self._watcher: Callable[[str], None] | None = None
        self._total_pending = 0
        self._dead = 0
        self._rng = random.Random()

    def _key(self, partition: int, *rest: str) -> str:
        return self._shared.keys.of("outbox", f"o{partition}", *rest)

    @property
    def held_partitions(self) -> list[int]:
        return sorted(self._held)

    # -- in-memory view (no I/O) ------------------------------------------------------

    def pending_count(self, user_id: str | None = None) -> int:
        if user_id is None:
            return self._total_pending
        return len(self._view.users.get(user_id, ()))

    def dead_letter_count(self) -> int:
        return self._dead

    def users_with_pending(self) -> list[str]:
        return list(self._view.users)

    @contextmanager
    def watch(self, callback: Callable[[str], None]) -> Iterator[None]:
        if self._watcher is not None:
            raise OutboxError("this outbox already has a delivery service")
        self._watcher = callback
        try:
            yield
        finally:
            self._watcher = None

    # -- writes -----------------------------------------------------------------------

    async def put(self, message: OutboundMessage) -> None:
        """Durable on return (`SharedRedis.durable`); DuplicateMessageId if stored already,
        OutboxStoreError if Redis failed: then no I99 may be sent."""
        p = partition_of(message.user_id, self._partitions)
        record = _Record(
            message.message_id,
            message.user_id,
            message.url,
            message.kind,
            message.content_type,
            to_us(message.created_at),
        )
        keys = [self._key(p, "m", message.message_id), self._key(p, "seq"), self._key(p, "stream")]
        args = [message.user_id, message.message_id, _ENCODER.encode(record), message.body]
        entry = await call(self._shared, self._put_script(keys=keys, args=args), durable=True)
        if entry is None:
            raise DuplicateMessageId(f"message {message.message_id!r} is already stored")

    async def mark_delivered(self, message_id: str) -> None:
        await self._end(message_id, "delivered", "done", "")

    async def dead_letter(self, message_id: str, error: str) -> None:
        if await self._end(message_id, "dead", "dead", error[:MAX_ERROR_CHARS]):
            self._dead += 1

    async def _end(self, message_id: str, state: str, index: str, error: str) -> bool:
        p = await self._partition_of_message(message_id)
        if p is None:
            return False
        keys = [self._key(p, "m", message_id), self._key(p, "stream"), self._key(p, index)]
        now_us = to_us(self._clock.now())
        args = [GROUP, state, now_us, error, message_id]
        changed = await call(self._shared, self._finish(keys=keys, args=args), durable=True)
        self._view.forget(message_id)
        return bool(changed)

    async def record_failure(self, message_id: str, error: str) -> None:
        p = await self._partition_of_message(message_id)
        if p is not None:
            keys = [self._key(p, "m", message_id)]
            await call(self._shared, self._failed(keys=keys, args=[error[:MAX_ERROR_CHARS]]))

    async def retry_dead_letter(self, message_id: str) -> None:
        await self._dead_letter_op(message_id, "retry")

    async def discard_dead_letter(self, message_id: str) -> None:
        await self._dead_letter_op(message_id, "discard")

    async def _dead_letter_op(self, message_id: str, op: str) -> None:
        p = await self._partition_of_message(message_id)
        if p is None:
            raise UnknownMessage(f"no message {message_id!r}")
        keys = [self._key(p, "m", message_id), self._key(p, "stream"), self._key(p, "dead")]
        found = text(
            await call(self._shared, self._dead_op(keys=keys, args=[message_id, op]), durable=True)
        )
        if found == "unknown":
            raise UnknownMessage(f"no message {message_id!r}")
        if found != "ok":
            raise NotDeadLettered(f"message {message_id!r} is {found}, not dead-lettered")
        self._dead = max(0, self._dead - 1)

    async def purge_delivered(self, retention_seconds: float) -> int:
        """Forget delivered messages older than the retention, in the partitions held
        here (up to MAX_PURGE_ROWS per call, as on SQLite)."""
        cutoff = to_us(self._clock.now()) - round(retention_seconds * 1e6)
        removed = 0
        for p in list(self._held):
            done = self._key(p, "done")
            ids = await call(
                self._shared,
                self._client.zrange(
                    done, "-inf", cutoff, BYSCORE, offset=0, count=MAX_PURGE_ROWS - removed
                ),
            )
            if ids:
                keys = [self._key(p, "m", text(i)) for i in ids]
                await call(self._shared, self._client.delete(keys))
                await call(self._shared, self._client.zrem(done, list(ids)))
                removed += len(ids)
            if removed >= MAX_PURGE_ROWS:
                break
        return removed

    # -- reads --------------------------------------------------------------------------

    async def next_pending(self, user_id: str) -> StoredMessage | None:
        while queue := self._view.users.get(user_id):
            message_id = queue[0][1]
            p = self._view.where[message_id][0]
            found = await self._load(p, message_id)
            if found is not None and found.state == "pending":
                return found
            self._view.forget(message_id)  # finished elsewhere (an admin, a former holder)
        return None

    async def get(self, message_id: str) -> StoredMessage | None:
        p = await self._partition_of_message(message_id)
        return None if p is None else await self._load(p, message_id)

    async def pending(
        self, user_id: str | None = None, *, after_id: int = 0, limit: int = MAX_LIST_ROWS
    ) -> list[StoredMessage]:
        """Pending messages of every node, in arrival order."""
        limit = max(0, min(limit, MAX_LIST_ROWS))
        # Entries after `after_id`'s; a User's share of a partition needs a longer read.
        start = f"({after_id >> SEQ_BITS}-{after_id & ((1 << SEQ_BITS) - 1)}" if after_id else "-"
        count = limit if user_id is None else MAX_SCAN_ROWS
        found: list[StoredMessage] = []
        for p in self._partitions_of(user_id):
            entries = await call(
                self._shared, self._client.xrange(self._key(p, "stream"), start, "+", count=count)
            )
            for entry in entries:
                fields = entry.field_values
                if user_id is not None and text(fields[b"u"]) != user_id:
                    continue
                message = await self._load(p, text(fields[b"m"]))
                if message is not None and message.state == "pending" and message.id > after_id:
                    found.append(message)
        return sorted(found, key=lambda m: m.id)[:limit]

    async def dead_letters(
        self, user_id: str | None = None, *, after_id: int = 0, limit: int = MAX_LIST_ROWS
    ) -> list[StoredMessage]:
        limit = max(0, min(limit, MAX_LIST_ROWS))
        found: list[StoredMessage] = []
        for p in self._partitions_of(user_id):
            ids = await call(
                self._shared,
                self._client.zrange(
                    self._key(p, "dead"),
                    after_id >> SEQ_BITS,
                    "+inf",
                    BYSCORE,
                    offset=0,
                    count=MAX_SCAN_ROWS,
                ),
            )
            for message_id in ids:
                message = await self._load(p, text(message_id))
                if message is None or message.id <= after_id:
                    continue
                if user_id in (None, message.user_id):
                    found.append(message)
        return sorted(found, key=lambda m: m.id)[:limit]

    def _partitions_of(self, user_id: str | None) -> list[int]:
        if user_id is not None:
            return [partition_of(user_id, self._partitions)]
        return list(range(self._partitions))

    async def _partition_of_message(self, message_id: str) -> int | None:
        known = self._view.where.get(message_id)
        if known is not None:
            return known[0]
        for p in range(self._partitions):  # an admin call, or a message another node read
            if await call(self._shared, self._client.exists([self._key(p, "m", message_id)])):
                return p
        return None

    async def _load(self, partition: int, message_id: str) -> StoredMessage | None:
        fields = await call(
            self._shared, self._client.hgetall(self._key(partition, "m", message_id))
        )
        if not fields or b"rec" not in fields:
            return None
        record = _DECODER.decode(fields[b"rec"])
        finished = fields.get(b"finished")
        error = fields.get(b"last_error")
        return StoredMessage(
            id=entry_number(fields[b"id"]),  # the first entry's: kept across retries
            message_id=record.message_id,
            user_id=record.user_id,
            user_seq=int(fields[b"seq"]),
            kind=record.kind,
            url=record.url,
            content_type=record.content_type,
            created_at=from_us(record.created_at_us),
            state=text(fields[b"state"]),  # type: ignore[arg-type]
            attempts=int(fields[b"attempts"]),
            last_error=None if error is None else text(error),
            finished_at=None if finished is None else from_us(int(finished)),
            body=bytes(fields.get(b"body", b"")),
        )

    # -- background: leases, readers, counts -------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._hold_leases, nursery)
            nursery.start_soon(self._refresh_counts)
            task_status.started()

    async def _hold_leases(self, nursery: trio.Nursery) -> None:
        nodes = self._shared.keys.of("outbox", None, "nodes")
        while True:
            try:
                now_ms = round(self._clock.now().timestamp() * 1000)
                await self._client.zadd(nodes, {self.consumer: now_ms + self._lease_ms})
                await self._client.zremrangebyscore(nodes, "-inf", now_ms)
                live = max(1, int(await self._client.zcard(nodes)))
                await self._balance(nursery, math.ceil(self._partitions / live))
            except REDIS_ERRORS as exc:
                log.warning("outbox: leases not renewed (%s)", exc or type(exc).__name__)
            await trio.sleep(self._lease_ms / 3000)

    async def _balance(self, nursery: trio.Nursery, target: int) -> None:
        for p in list(self._held):
            if not await self._lease_op(p, "take"):
                log.warning("outbox: partition %d taken by another node", p)
                self._release_locally(p)
        for p in sorted(self._held, reverse=True)[: max(0, len(self._held) - target)]:
            self._release_locally(p)
            await self._lease_op(p, "drop")
        free = [p for p in range(self._partitions) if p not in self._held]
        self._rng.shuffle(free)  # nodes starting together do not all ask for the same
        for p in free:
            if len(self._held) >= target:
                break
            if await self._lease_op(p, "take"):
                self._held[p] = trio.CancelScope()
                nursery.start_soon(self._read_partition, p, self._held[p])

    async def _lease_op(self, partition: int, op: str) -> bool:
        keys = [self._key(partition, "lease")]
        return bool(await self._lease(keys=keys, args=[self.consumer, self._lease_ms, op]))

    def _release_locally(self, partition: int) -> None:
        scope = self._held.pop(partition, None)
        if scope is not None:
            scope.cancel()
        self._view.drop_partition(partition)

    async def _read_partition(self, partition: int, scope: trio.CancelScope) -> None:
        stream = self._key(partition, "stream")
        with scope:
            while True:
                try:
                    await ensure_group(self._client, stream, GROUP)
                    await self._take_over(partition, stream)
                    await forget_gone_consumers(self._client, stream, GROUP, self.consumer)
                    while True:
                        reply = await self._client.xreadgroup(
                            GROUP, self.consumer, {stream: ">"}, count=READ_BATCH,
                            block=READ_BLOCK_MS,
                        )  # fmt: skip
                        for entries in (reply or {}).values():
                            self._accept(partition, entries, repeated=False)
                except REDIS_ERRORS as exc:
                    log.warning("outbox: partition %d: %s", partition, exc or type(exc).__name__)
                    await trio.sleep(RETRY_PAUSE_SECONDS)

    async def _take_over(self, partition: int, stream: str) -> None:
        """Entries the previous holder read and did not finish: ours now, maybe resent."""
        cursor = "0-0"
        while True:
            reply = await self._client.xautoclaim(
                stream, GROUP, self.consumer, 0, cursor, count=CLAIM_BATCH
            )
            cursor = text(reply[0])
            self._accept(partition, reply[1], repeated=True)
            if cursor == "0-0":
                return

    def _accept(self, partition: int, entries: Any, *, repeated: bool) -> None:
        for entry in entries:
            fields = entry.field_values
            user_id = text(fields[b"u"])
            if not self._view.add(partition, user_id, int(fields[b"s"]), text(fields[b"m"])):
                continue
            if repeated and self._stream_metrics is not None:
                self._stream_metrics.redeliveries.labels(queue="outbox").inc()
            if self._watcher is not None:
                self._watcher(user_id)

    async def _refresh_counts(self) -> None:
        while True:
            try:
                pending = dead = 0
                for p in range(self._partitions):
                    pending += int(await self._client.xlen(self._key(p, "stream")))
                    dead += int(await self._client.zcard(self._key(p, "dead")))
                self._total_pending, self._dead = pending, dead
                if self._metrics is not None:
                    self._metrics.outbox_depth.set(pending)
            except REDIS_ERRORS as exc:
                log.warning("outbox: counts not refreshed (%s)", exc or type(exc).__name__)
            await trio.sleep(COUNTS_REFRESH_SECONDS)
