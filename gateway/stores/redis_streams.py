"""What the Redis Streams stores (jobs_redis, outbox_redis) share: consumer names, groups,
entry IDs as integers, and the conversion of Redis failures into the stores' error.

A consumer name is new for every process start (host, pid, random), so a restarted node
never mistakes the entries its previous life left pending for its own: those are taken
over like any dead node's, and counted as redeliveries.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable
from typing import Any, Final, Protocol, TypeVar

import coredis.exceptions

from gateway.stores.outbox_sqlite import OutboxStoreError
from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis, SharedStoreUnavailable

_T = TypeVar("_T")

SEQ_BITS: Final = 20  # of an entry ID's sequence part kept in its integer form
RETRY_PAUSE_SECONDS: Final = 1.0  # a background loop's pause after Redis failed it
# A consumer is forgotten once idle this long with nothing pending: a live one reads at
# least every second (BLOCK), so it is long gone (a process that stopped or restarted).
FORGET_IDLE_MS: Final = 600_000


class Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class LabelledCounter(Protocol):
    def labels(self, queue: str) -> Counter: ...


class StreamMetrics(Protocol):
    """gateway.edge.metrics.Metrics fits: pending depths and the redelivery counter."""

    @property
    def redeliveries(self) -> LabelledCounter: ...


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def entry_number(entry: bytes | str) -> int:
    """A stream entry ID (`<ms>-<seq>`) as one increasing integer, for `StoredMessage.id`
    and admin paging (`after_id`)."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    ms, _, seq = text.partition("-")
    return (int(ms) << SEQ_BITS) | min(int(seq or 0), (1 << SEQ_BITS) - 1)


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def ensure_group(client: Any, stream: str, group: str) -> None:
    """The consumer group, reading from the stream's first entry (MKSTREAM: before any)."""
    with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):  # BUSYGROUP
        await client.xgroup_create(stream, group, "0", mkstream=True)


async def call(shared: SharedRedis, request: Awaitable[_T], *, durable: bool = False) -> _T:
    """Await a Redis call; any failure becomes OutboxStoreError (what the life cycle and
    delivery handle: a 503 before an acknowledgement, a retry after one)."""
    try:
        if durable:
            return await shared.durable(request)
        return await request
    except SharedStoreUnavailable as exc:
        raise OutboxStoreError(str(exc)) from exc
    except REDIS_ERRORS as exc:
        raise OutboxStoreError(f"Redis: {exc or type(exc).__name__}") from exc


async def forget_gone_consumers(
    client: Any, stream: str, group: str, me: str, idle_ms: int = FORGET_IDLE_MS
) -> None:
    """Remove consumers of past processes, so the group does not grow at each restart.
    Only those with no pending entry: deleting one with entries would drop them."""
    for consumer in await client.xinfo_consumers(stream, group):
        name = text(consumer[b"name"])
        pending, idle = int(consumer[b"pending"]), int(consumer[b"idle"])
        if name != me and pending == 0 and idle >= idle_ms:
            await client.xgroup_delconsumer(stream, group, name)
