"""Durable quarantine: requests held by anomaly detection, until released or deleted.

SQLite in WAL mode with `synchronous=FULL` (opened by gateway/stores/sqlite.py): a
held request is on disk before `hold` returns, so the AD1 alert never names a request
a crash could lose.
Durability costs one fsync per *batch*, not per request: one writer task owns
the only connection, takes every operation already queued (up to
MAX_BATCH_OPS), runs them in one transaction in a worker thread and commits
once (group commit). The connection is used by one thread at a time (a
CapacityLimiter of 1, and only the writer task calls it); reads go the same
way so they see every committed write in order.

QuarantineEventRef is `xs:integer` with at most 20 digits in every DUIS XSD
(5.0 to 5.4), so refs are SQLite AUTOINCREMENT integers: unique for the life of
the file, never reused after a delete, and offset by `node_id * 10**15` so
nodes with separate files never collide (SQLite's signed 64-bit limit allows
node_id up to 9222).

Release is journaled in two steps: `begin_release` marks the row `releasing`
(with the releasing process's owner id) in the transaction that hands out the
bytes; the caller processes the request until its answer is durable elsewhere
(jobs journal or outbox) and then calls `finish_release` (`released`). A crash
in between leaves the row `releasing`: at start the owner resumes every such
row (`releasing(owner)`), so the User gets its answer once. Owner ids are the
worker index: only a process's own restarted successor resumes its rows, never a
live peer sharing the file.

A released request keeps its bytes until `expire` purges finished rows after
the retention period. A deleted request's bytes are dropped at once.

Each operator decision (release, delete) may carry who and why (`Decision`,
gateway/stores/quarantine_audit.py): it is written in the transaction that changes the
request's state, and lives as long as the request's row does.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Literal, NewType, NoReturn, Protocol, TypeVar

import msgspec
import trio

from gateway.core.clock import Clock
from gateway.stores.group_commit import SqlJournal, running
from gateway.stores.quarantine_audit import (
    AUDIT_SCHEMA,
    AuditEntry,
    Decision,
    decisions_of,
    purge_orphans,
    record_decision,
)
from gateway.stores.sqlite import checked_synchronous, open_database
from gateway.stores.times import from_us, to_us
from thresholds.config import Breach

QuarantineEventRef = NewType("QuarantineEventRef", int)
QuarantineState = Literal["held", "releasing", "released", "deleted"]

QUEUE_SIZE: Final = 1024  # operations waiting for the writer; senders wait beyond it
MAX_BATCH_OPS: Final = 256  # operations per transaction (one fsync)
MAX_LIST_ROWS: Final = 1000  # rows per list/expire call; callers page with after_ref
REFS_PER_NODE: Final = 10**15
MAX_NODE_ID: Final = (2**63 - 1) // REFS_PER_NODE - 1

_COLUMNS: Final = (
    "event_ref, user_id, request_id, srv, duis_version, breach, held_at_us, state, "
    "finished_at_us, raw_request, release_owner"
)
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS quarantine (
    event_ref INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    srv TEXT NOT NULL,
    duis_version TEXT NOT NULL,
    breach TEXT NOT NULL,
    held_at_us INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'held',
    finished_at_us INTEGER,
    raw_request BLOB NOT NULL,
    release_owner INTEGER
);
CREATE INDEX IF NOT EXISTS quarantine_by_state ON quarantine (state, user_id, held_at_us);
"""
# Files from before the release journal lack the owner column.
_ADD_RELEASE_OWNER: Final = "ALTER TABLE quarantine ADD COLUMN release_owner INTEGER"


class QuarantineItem(msgspec.Struct, frozen=True, kw_only=True):
    """What the pipeline hands over when a request is held."""

    user_id: str
    request_id: str
    srv: str
    duis_version: str
    breach: Breach
    held_at: dt.datetime  # aware UTC, from the injected clock
    raw_request: bytes


class QuarantinedRequest(msgspec.Struct, frozen=True, kw_only=True):
    event_ref: QuarantineEventRef
    user_id: str
    request_id: str
    srv: str
    duis_version: str
    breach: Breach
    held_at: dt.datetime
    state: QuarantineState
    finished_at: dt.datetime | None  # when released or deleted
    raw_request: bytes
    release_owner: int | None = None  # the process that began releasing it


class QuarantineError(Exception):
    """The User's instruction cannot be applied (unknown ref, already released...)."""


class UnknownEventRef(QuarantineError):
    pass


class NotHeld(QuarantineError):
    """Released or deleted already: each request is released at most once."""


class QuarantineStoreError(Exception):
    """We broke: the database failed or the store is not running."""


T = TypeVar("T")


class QuarantineStore(Protocol):
    """Held requests, whichever backend keeps them: this module's SQLite store (one
    node) or gateway/stores/quarantine_redis.py (every node). Writes are durable when
    they return; release and delete leave "held" exactly once."""

    @property
    def transactions(self) -> int: ...
    @property
    def queue_depth(self) -> int: ...
    async def hold(self, item: QuarantineItem) -> QuarantineEventRef: ...
    async def list_requests(
        self,
        *,
        user_id: str | None = None,
        srv: str | None = None,
        min_age_seconds: float = 0.0,
        state: QuarantineState = "held",
        after_ref: int = 0,
        limit: int = MAX_LIST_ROWS,
    ) -> list[QuarantinedRequest]: ...
    async def show(self, ref: int) -> QuarantinedRequest | None: ...
    async def begin_release(
        self, ref: int, owner: int, decision: Decision | None = None
    ) -> QuarantinedRequest: ...
    async def finish_release(self, ref: int) -> None: ...
    async def releasing(self, owner: int) -> list[QuarantinedRequest]: ...
    async def delete(self, ref: int, decision: Decision | None = None) -> QuarantinedRequest: ...
    async def expire(self, retention_seconds: float) -> list[QuarantinedRequest]: ...
    async def audit(self, ref: int) -> list[AuditEntry]: ...
    async def count(self, state: QuarantineState = "held") -> int: ...


class SqliteQuarantineStore:
    def __init__(
        self, path: str | Path, clock: Clock, *, node_id: int = 0, synchronous: str = "FULL"
    ) -> None:
        self._synchronous = checked_synchronous(synchronous)
        if not 0 <= node_id <= MAX_NODE_ID:
            raise ValueError(f"node_id must be within 0..{MAX_NODE_ID}")
        self._path = str(path)
        self._clock = clock
        self._node_id = node_id
        self._writer = SqlJournal(
            error_type=QuarantineStoreError,
            what="quarantine",
            max_batch=MAX_BATCH_OPS,
            queue_size=QUEUE_SIZE,
        )

    @property
    def transactions(self) -> int:
        """Batches committed or rolled back: holds / transactions = batching."""
        return self._writer.transactions

    @property
    def queue_depth(self) -> int:
        return self._writer.queue_depth

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: open the file, then apply queued operations in batches."""
        conn = await trio.to_thread.run_sync(_connect, self._path, self._node_id, self._synchronous)
        try:
            await self._writer.run(conn, task_status=task_status)
        finally:
            conn.close()

    async def hold(self, item: QuarantineItem) -> QuarantineEventRef:
        """Store a held request; returns once the batch holding it is committed."""
        held_at_us = to_us(item.held_at)

        def insert(conn: sqlite3.Connection) -> QuarantineEventRef:
            cur = conn.execute(
                "INSERT INTO quarantine (user_id, request_id, srv, duis_version, breach,"
                " held_at_us, raw_request) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    item.user_id,
                    item.request_id,
                    item.srv,
                    item.duis_version,
                    item.breach,
                    held_at_us,
                    item.raw_request,
                ),
            )
            assert cur.lastrowid is not None  # an INSERT into a rowid table always has one
            return QuarantineEventRef(cur.lastrowid)

        return await self._submit(insert)

    async def list_requests(
        self,
        *,
        user_id: str | None = None,
        srv: str | None = None,
        min_age_seconds: float = 0.0,
        state: QuarantineState = "held",
        after_ref: int = 0,
        limit: int = MAX_LIST_ROWS,
    ) -> list[QuarantinedRequest]:
        """Requests in `state`, oldest ref first, held at least `min_age_seconds` ago."""
        sql = [f"SELECT {_COLUMNS} FROM quarantine WHERE state = ? AND event_ref > ?"]
        params: list[object] = [state, after_ref]
        if user_id is not None:
            sql.append("AND user_id = ?")
            params.append(user_id)
        if srv is not None:
            sql.append("AND srv = ?")
            params.append(srv)
        if min_age_seconds > 0:
            sql.append("AND held_at_us <= ?")
            params.append(to_us(self._clock.now()) - round(min_age_seconds * 1e6))
        sql.append("ORDER BY event_ref LIMIT ?")
        params.append(max(0, min(limit, MAX_LIST_ROWS)))
        query = " ".join(sql)
        return await self._submit(lambda conn: [_row(r) for r in conn.execute(query, params)])

    async def show(self, ref: int) -> QuarantinedRequest | None:
        def select(conn: sqlite3.Connection) -> QuarantinedRequest | None:
            found = _select(conn, ref)
            return None if found is None else _row(found)

        return await self._submit(select)

    async def begin_release(
        self, ref: int, owner: int, decision: Decision | None = None
    ) -> QuarantinedRequest:
        """Mark `releasing` for `owner`, exactly once, and return the record with its bytes.

        Refused with NotHeld if it is being or was released, or was deleted. Call
        `finish_release` once the request's answer is durable. `decision` is audited
        in the same transaction.
        """
        now_us = to_us(self._clock.now())

        def update(conn: sqlite3.Connection) -> QuarantinedRequest:
            found = conn.execute(
                f"UPDATE quarantine SET state = 'releasing', release_owner = ?"
                f" WHERE event_ref = ? AND state = 'held' RETURNING {_COLUMNS}",
                (owner, ref),
            ).fetchone()
            if found is None:
                _refuse_not_held(conn, ref)
            record_decision(conn, ref, now_us, "release", decision)
            return _row(found)

        return await self._submit(update)

    async def finish_release(self, ref: int) -> None:
        """`releasing` -> `released`: the request was processed and its answer stored."""
        now_us = to_us(self._clock.now())
        await self._submit(
            lambda conn: conn.execute(
                "UPDATE quarantine SET state = 'released', finished_at_us = ?"
                " WHERE event_ref = ? AND state = 'releasing'",
                (now_us, ref),
            )
        )

    async def releasing(self, owner: int) -> list[QuarantinedRequest]:
        """Releases `owner` began and did not finish (it stopped in between)."""
        query = (
            f"SELECT {_COLUMNS} FROM quarantine WHERE state = 'releasing'"
            " AND release_owner = ? ORDER BY event_ref"
        )
        return await self._submit(lambda conn: [_row(r) for r in conn.execute(query, (owner,))])

    async def delete(self, ref: int, decision: Decision | None = None) -> QuarantinedRequest:
        """Mark deleted (never to be processed) and drop the request bytes; audit `decision`."""
        now_us = to_us(self._clock.now())

        def update(conn: sqlite3.Connection) -> QuarantinedRequest:
            found = conn.execute(
                f"UPDATE quarantine SET state = 'deleted', finished_at_us = ?, raw_request = x''"
                f" WHERE event_ref = ? AND state = 'held' RETURNING {_COLUMNS}",
                (now_us, ref),
            ).fetchone()
            if found is None:
                _refuse_not_held(conn, ref)
            record_decision(conn, ref, now_us, "delete", decision)
            return _row(found)

        return await self._submit(update)

    async def expire(self, retention_seconds: float) -> list[QuarantinedRequest]:
        """Remove held requests older than the retention and return them to notify.

        Also purges released/deleted rows finished longer ago than the retention.
        At most MAX_LIST_ROWS held rows per call: call again while it returns a full list.
        """
        cutoff = to_us(self._clock.now()) - round(retention_seconds * 1e6)

        def remove(conn: sqlite3.Connection) -> list[QuarantinedRequest]:
            rows = conn.execute(
                f"DELETE FROM quarantine WHERE event_ref IN (SELECT event_ref FROM quarantine"
                f" WHERE state = 'held' AND held_at_us <= ? ORDER BY event_ref LIMIT ?)"
                f" RETURNING {_COLUMNS}",
                (cutoff, MAX_LIST_ROWS),
            ).fetchall()
            conn.execute(
                "DELETE FROM quarantine WHERE state != 'held' AND finished_at_us <= ?", (cutoff,)
            )
            purge_orphans(conn)
            return sorted((_row(r) for r in rows), key=lambda q: q.event_ref)

        return await self._submit(remove)

    async def audit(self, ref: int) -> list[AuditEntry]:
        """The decisions recorded for one request, oldest first."""
        return await self._submit(lambda conn: decisions_of(conn, ref))

    async def count(self, state: QuarantineState = "held") -> int:
        """How many requests are in `state` (an index scan: cheap enough to poll)."""

        def select(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count(*) FROM quarantine WHERE state = ?", (state,))
            return int(row.fetchone()[0])

        return await self._submit(select)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # An op submitted before the caller is cancelled may still be applied.
        return await self._writer.submit(fn)


@asynccontextmanager
async def open_quarantine_store(
    path: str | Path, clock: Clock, *, node_id: int = 0, synchronous: str = "FULL"
) -> AsyncIterator[SqliteQuarantineStore]:
    """A running store for the duration of the block (its writer in a child nursery)."""
    store = SqliteQuarantineStore(path, clock, node_id=node_id, synchronous=synchronous)
    async with running(store):
        yield store


def _connect(path: str, node_id: int, synchronous: str = "FULL") -> sqlite3.Connection:
    def setup(conn: sqlite3.Connection) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(quarantine)")}
        if "release_owner" not in columns:
            conn.execute(_ADD_RELEASE_OWNER)
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'quarantine', ?"
            " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'quarantine')",
            (node_id * REFS_PER_NODE,),
        )

    return open_database(path, synchronous, schema=_SCHEMA + AUDIT_SCHEMA, setup=setup)


def _refuse_not_held(conn: sqlite3.Connection, ref: int) -> NoReturn:
    prior = _select(conn, ref)
    if prior is None:
        raise UnknownEventRef(f"no quarantined request {ref}")
    if prior[7] == "releasing":
        raise NotHeld(f"quarantined request {ref} is being released")
    raise NotHeld(f"quarantined request {ref} was already {prior[7]}")


def _select(conn: sqlite3.Connection, ref: int) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {_COLUMNS} FROM quarantine WHERE event_ref = ?", (ref,)
    ).fetchone()
    return row


def _row(r: tuple[Any, ...]) -> QuarantinedRequest:
    return QuarantinedRequest(
        event_ref=QuarantineEventRef(r[0]),
        user_id=r[1],
        request_id=r[2],
        srv=r[3],
        duis_version=r[4],
        breach=r[5],
        held_at=from_us(r[6]),
        state=r[7],
        finished_at=None if r[8] is None else from_us(r[8]),
        raw_request=bytes(r[9]),
        release_owner=r[10],
    )
