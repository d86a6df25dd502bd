"""The durable outbox: asynchronous Service Responses and DCC alerts awaiting delivery.

For CommandVariants 1, 3, 5 and 7 the User gets an I99 at once and the signed
Service Response later, POSTed to its Receive Response URL (gateway/edge/delivery.py).
Nothing acknowledged may be lost, so the pipeline awaits `put` *before* it sends
the I99: `put` returns only once the message is committed to disk.

Storage is one SQLite file (its layer is gateway/stores/outbox_sqlite.py) in WAL mode with
`synchronous=FULL`, so every commit is fsynced. Durability costs one fsync per
*batch*, not per message: one writer task (`run`) owns the only connection, takes
every operation already queued (up to `max_batch`), runs them in one transaction in
a worker thread and commits once (group commit). Operations arriving while a
commit is in flight wait in a bounded channel and share the next commit; when the
channel is full, callers wait (backpressure, not unbounded memory). The connection
is used by one thread at a time (a CapacityLimiter of 1, and only the writer task
calls it); reads go the same way, so they see every committed write in order.

Ordering: each User ID has its own gap-free sequence (`user_seq`, from the
`outbox_user` counter row, never reused even after purges); delivery goes in
that order. `id` is the arrival order across all Users, for admin paging.

Lifecycle of a row: pending -> delivered (body dropped: the User has it, and
keeping every response would grow the file without bound; metadata kept until
`purge_delivered`), or pending -> dead (body kept, with the last error) ->
pending again via `retry_dead_letter`, or removed via `discard_dead_letter`.

In-memory state (pending counts per User, dead-letter count) is changed only
after the commit that changed the rows, on the trio thread, so what delivery
sees never runs ahead of the disk.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol, TypeVar

import msgspec
import trio

from gateway.core.clock import Clock, SystemClock
from gateway.stores.group_commit import SqlJournal
from gateway.stores.outbox_sqlite import (
    COLUMNS,
    MessageKind,
    MessageState,
    OutboxStoreError,
    StoredMessage,
    connect,
    row_to_message,
)
from gateway.stores.sqlite import Synchronous
from gateway.stores.times import to_us

QUEUE_SIZE: Final = 1024  # operations waiting for the writer; callers wait beyond it
MAX_BATCH_OPS: Final = 512  # operations per transaction (one fsync)
MAX_LIST_ROWS: Final = 1000  # rows per admin listing; callers page with after_id
MAX_PURGE_ROWS: Final = 5000  # delivered rows removed per transaction
MAX_ERROR_CHARS: Final = 500  # last_error kept per message
XML_CONTENT_TYPE: Final = "application/xml"


class Gauge(Protocol):
    def set(self, value: float) -> None: ...


class OutboxMetrics(Protocol):
    """What the outbox reports (gateway.edge.metrics.Metrics fits): its pending depth."""

    @property
    def outbox_depth(self) -> Gauge: ...


class OutboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What the pipeline hands over: a signed response or alert for one User ID."""

    message_id: str  # stable and unique: sent as X-DUIS-Message-ID for de-duplication
    user_id: str
    url: str  # the User's Receive Response URL
    body: bytes  # already signed: sent byte for byte
    created_at: dt.datetime  # aware UTC, from the injected clock
    kind: MessageKind = "response"
    content_type: str = XML_CONTENT_TYPE


class OutboxError(Exception):
    """The caller asked for something the outbox refuses."""


class DuplicateMessageId(OutboxError):
    """A message id is stored at most once, so it is delivered at most once."""


class UnknownMessage(OutboxError):
    pass


class NotDeadLettered(OutboxError):
    pass


T = TypeVar("T")


class Outbox:
    """Create with `await Outbox.open(path)`, then run `run` in a nursery (or use
    `open_outbox`). Every async method needs the writer running."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        pending: dict[str, int],
        dead: int,
        *,
        clock: Clock,
        metrics: OutboxMetrics | None,
        max_batch: int,
        queue_size: int,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._pending = pending  # insertion order = order Users first had work
        self._total_pending = sum(pending.values())
        self._dead = dead
        self._clock = clock
        self._metrics = metrics
        self._writer = SqlJournal(
            error_type=OutboxStoreError, what="outbox", max_batch=max_batch, queue_size=queue_size
        )
        self._stopped = False  # the writer ran and ended: its channel is closed
        self._watcher: Callable[[str], None] | None = None
        self._publish_depth()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock: Clock | None = None,
        metrics: OutboxMetrics | None = None,
        max_batch: int = MAX_BATCH_OPS,
        queue_size: int = QUEUE_SIZE,
        synchronous: Synchronous = "FULL",
    ) -> Outbox:
        """Open (or create) the file and load what is still to deliver.

        `max_batch=1` gives one commit per operation (bench comparison only).
        """
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        conn, pending, dead = await trio.to_thread.run_sync(connect, str(path), synchronous)
        return cls(
            conn,
            pending,
            dead,
            clock=clock if clock is not None else SystemClock(),
            metrics=metrics,
            max_batch=max_batch,
            queue_size=queue_size,
        )

    # -- the writer ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: apply queued operations in batches, one commit each."""
        if self._conn is None or self._writer.running or self._stopped:
            raise OutboxStoreError("an Outbox runs its writer once; open it again to restart")
        try:
            await self._writer.run(self._conn, task_status=task_status)
        finally:
            self._stopped = True

    def close(self) -> None:
        """Close the file once `run` has returned. Blocks briefly (WAL checkpoint)."""
        if self._writer.running:
            raise OutboxStoreError("close the outbox after its writer has stopped")
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def queue_depth(self) -> int:
        return self._writer.queue_depth

    # -- in-memory view (no I/O) ----------------------------------------------------

    def pending_count(self, user_id: str | None = None) -> int:
        return self._total_pending if user_id is None else self._pending.get(user_id, 0)

    def dead_letter_count(self) -> int:
        return self._dead

    def users_with_pending(self) -> list[str]:
        """User IDs with pending messages, those waiting longest first."""
        return list(self._pending)

    @contextmanager
    def watch(self, callback: Callable[[str], None]) -> Iterator[None]:
        """Call `callback(user_id)` on the trio thread whenever a commit gives that
        User new pending work (a put, or a dead letter retried).

        One watcher at a time: two delivery services on one outbox would send every
        message twice.
        """
        if self._watcher is not None:
            raise OutboxError("this outbox already has a delivery service")
        self._watcher = callback
        try:
            yield
        finally:
            self._watcher = None

    # -- writes ---------------------------------------------------------------------

    async def put(self, message: OutboundMessage) -> None:
        """Store a message; returns once the batch holding it is committed (fsynced).

        Raises DuplicateMessageId if the id is already stored, OutboxStoreError if the
        database failed: then nothing was stored and no I99 may be sent. If the caller
        is cancelled while waiting, the message may still be committed (and delivered).
        """
        created_us = to_us(message.created_at)

        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute(
                "SELECT 1 FROM outbox WHERE message_id = ?", (message.message_id,)
            ).fetchone():
                raise DuplicateMessageId(f"message {message.message_id!r} is already stored")
            (seq,) = conn.execute(
                "INSERT INTO outbox_user (user_id, last_seq) VALUES (?, 1)"
                " ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + 1"
                " RETURNING last_seq",
                (message.user_id,),
            ).fetchone()
            row = msgspec.structs.asdict(message) | {"seq": seq, "created_at_us": created_us}
            conn.execute(
                "INSERT INTO outbox (message_id, user_id, user_seq, kind, url, content_type,"
                " created_at_us, body) VALUES (:message_id, :user_id, :seq, :kind, :url,"
                " :content_type, :created_at_us, :body)",
                row,
            )

        await self._submit(insert, lambda _: self._add_pending(message.user_id))

    async def mark_delivered(self, message_id: str) -> None:
        """The User answered 2xx: never send it again. Drops the body."""
        now_us = to_us(self._clock.now())

        update = _fetch_one(
            "UPDATE outbox SET state = 'delivered', finished_at_us = ?, body = x''"
            " WHERE message_id = ? AND state = 'pending' RETURNING user_id",
            (now_us, message_id),
        )
        await self._submit(update, lambda found: self._remove_pending(_user_of(found)))

    async def record_failure(self, message_id: str, error: str) -> None:
        """One more failed attempt, kept so restarts continue the count."""

        update = _fetch_one(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?"
            " WHERE message_id = ? AND state = 'pending'",
            (error[:MAX_ERROR_CHARS], message_id),
        )
        await self._submit(update)

    async def dead_letter(self, message_id: str, error: str) -> None:
        """Give up on a message (counted as a failed attempt); kept with its body."""
        now_us = to_us(self._clock.now())

        update = _fetch_one(
            "UPDATE outbox SET state = 'dead', finished_at_us = ?, last_error = ?,"
            " attempts = attempts + 1 WHERE message_id = ? AND state = 'pending'"
            " RETURNING user_id",
            (now_us, error[:MAX_ERROR_CHARS], message_id),
        )

        def after(found: tuple[str] | None) -> None:
            if found is not None:
                self._dead += 1
            self._remove_pending(_user_of(found))

        await self._submit(update, after)

    async def retry_dead_letter(self, message_id: str) -> None:
        """Make a dead letter pending again, with a fresh attempt count.

        It keeps its user_seq, so it goes before any later message still pending for
        that User, though after those already delivered (the receiver can tell from
        X-DUIS-Sequence that it is late).
        """

        def update(conn: sqlite3.Connection) -> str:
            found = conn.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, finished_at_us = NULL"
                " WHERE message_id = ? AND state = 'dead' RETURNING user_id",
                (message_id,),
            ).fetchone()
            if found is None:
                _refuse_not_dead(conn, message_id)
            return str(found[0])

        def after(user_id: str) -> None:
            self._dead -= 1
            self._add_pending(user_id)

        await self._submit(update, after)

    async def discard_dead_letter(self, message_id: str) -> None:
        """The operator gives up on a dead letter for good: the row is removed."""

        def delete(conn: sqlite3.Connection) -> None:
            sql = "DELETE FROM outbox WHERE message_id = ? AND state = 'dead' RETURNING id"
            if conn.execute(sql, (message_id,)).fetchone() is None:
                _refuse_not_dead(conn, message_id)

        def after(_: None) -> None:
            self._dead -= 1

        await self._submit(delete, after)

    async def purge_delivered(self, retention_seconds: float) -> int:
        """Remove up to MAX_PURGE_ROWS delivered rows finished longer ago than the
        retention; returns how many. Call again while it returns MAX_PURGE_ROWS: small
        transactions keep puts (and so I99s) from waiting behind a large delete.

        Until then a repeated put of a delivered message id is refused as a duplicate.
        """
        cutoff = to_us(self._clock.now()) - round(retention_seconds * 1e6)

        def delete(conn: sqlite3.Connection) -> int:
            # In id order: rows finish roughly in arrival order, so the scan stops early.
            return conn.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'delivered'"
                " AND finished_at_us <= ? ORDER BY id LIMIT ?)",
                (cutoff, MAX_PURGE_ROWS),
            ).rowcount

        return await self._submit(delete)

    # -- reads ------------------------------------------------------------------------

    async def next_pending(self, user_id: str) -> StoredMessage | None:
        """The User's pending message with the lowest sequence number."""
        where = "state = 'pending' AND user_id = ? ORDER BY user_seq LIMIT 1"
        return await self._select_one(where, user_id)

    async def get(self, message_id: str) -> StoredMessage | None:
        return await self._select_one("message_id = ?", message_id)

    async def pending(
        self, user_id: str | None = None, *, after_id: int = 0, limit: int = MAX_LIST_ROWS
    ) -> list[StoredMessage]:
        """Pending messages in arrival order (which is also each User's order)."""
        return await self._list("pending", user_id, after_id, limit)

    async def dead_letters(
        self, user_id: str | None = None, *, after_id: int = 0, limit: int = MAX_LIST_ROWS
    ) -> list[StoredMessage]:
        return await self._list("dead", user_id, after_id, limit)

    async def _select_one(self, where: str, param: str) -> StoredMessage | None:
        found = await self._submit(
            _fetch_one(f"SELECT {COLUMNS} FROM outbox WHERE {where}", (param,))
        )
        return None if found is None else row_to_message(found)

    async def _list(
        self, state: MessageState, user_id: str | None, after_id: int, limit: int
    ) -> list[StoredMessage]:
        sql = f"SELECT {COLUMNS} FROM outbox WHERE state = ? AND id > ?"
        params: list[object] = [state, after_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        sql += " ORDER BY id LIMIT ?"
        params.append(max(0, min(limit, MAX_LIST_ROWS)))
        return await self._submit(
            lambda conn: [row_to_message(r) for r in conn.execute(sql, params)]
        )

    # -- plumbing ---------------------------------------------------------------------

    async def _submit(
        self, fn: Callable[[sqlite3.Connection], T], after: Callable[[T], None] | None = None
    ) -> T:
        return await self._writer.submit(fn, after)

    def _add_pending(self, user_id: str) -> None:
        self._pending[user_id] = self._pending.get(user_id, 0) + 1
        self._total_pending += 1
        self._publish_depth()
        if self._watcher is not None:
            self._watcher(user_id)

    def _remove_pending(self, user_id: str | None) -> None:
        if user_id is None:  # no row changed (already delivered or dead)
            return
        left = self._pending[user_id] - 1  # a row changed, so it was counted
        if left > 0:
            self._pending[user_id] = left
        else:
            del self._pending[user_id]
        self._total_pending -= 1
        self._publish_depth()

    def _publish_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.outbox_depth.set(self._total_pending)


@asynccontextmanager
async def open_outbox(
    path: Path,
    *,
    clock: Clock | None = None,
    metrics: OutboxMetrics | None = None,
    synchronous: Synchronous = "FULL",
) -> AsyncIterator[Outbox]:
    """A running outbox for the duration of the block (its writer in a child nursery).

    Stop delivery before leaving the block, so its last commits still have a writer.
    """
    outbox = await Outbox.open(path, clock=clock, metrics=metrics, synchronous=synchronous)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(outbox.run)
            try:
                yield outbox
            finally:
                nursery.cancel_scope.cancel()
    finally:
        outbox.close()


def _fetch_one(sql: str, params: tuple[object, ...]) -> Callable[[sqlite3.Connection], Any]:
    return lambda conn: conn.execute(sql, params).fetchone()


def _user_of(found: tuple[str] | None) -> str | None:
    return None if found is None else found[0]


def _refuse_not_dead(conn: sqlite3.Connection, message_id: str) -> NoReturn:
    prior = conn.execute("SELECT state FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
    if prior is None:
        raise UnknownMessage(f"no message {message_id!r}")
    raise NotDeadLettered(f"message {message_id!r} is {prior[0]}, not dead-lettered")
