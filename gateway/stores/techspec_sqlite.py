"""The techspec stores on SQLite: one file in the state dir (`techspec.sqlite`).

Both protocols of gateway.stores.techspec_store over one connection, used as the quarantine
store uses its own: one writer task owns the connection and runs each operation in a
worker thread, grouping what is queued into one transaction (gateway.stores.group_commit). WAL
mode, `synchronous` as configured (FULL: a replaced table or a saved case is on disk
before the call returns). Reads go through the same writer, so they see every write
in order.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import trio

from gateway.core.techspec.install_leave import InstallLeaveCase
from gateway.stores.group_commit import SqlJournal, running
from gateway.stores.sqlite import Synchronous, checked_synchronous, open_database
from gateway.stores.techspec_store import (
    KEEP_DOCUMENTS,
    MAX_AUDIT_ROWS,
    CaseEvent,
    DocumentFormat,
    StaleCase,
    TableKind,
    TableRevision,
    TechspecStoreError,
    check_revision_text,
    decode_case,
    document_digest,
    encode_case,
)
from gateway.stores.times import from_us, to_us

FILE_NAME: Final = "techspec.sqlite"
QUEUE_SIZE: Final = 256  # operations waiting for the writer; callers wait beyond it
MAX_BATCH_OPS: Final = 64  # operations per transaction (one fsync)
MAX_HISTORY_ROWS: Final = 1000

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS table_revision (
    kind TEXT NOT NULL CHECK (kind IN ('techspec', 'coverage')),
    revision INTEGER NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('toml', 'json')),
    loaded_at_us INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    summary TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    document BLOB NOT NULL,
    PRIMARY KEY (kind, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS install_leave_case (
    hub_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    notified_at_us INTEGER NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS install_leave_open ON install_leave_case (state, notified_at_us);
CREATE TABLE IF NOT EXISTS install_leave_event (
    id INTEGER PRIMARY KEY,
    hub_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS install_leave_event_by_hub ON install_leave_event (hub_id, id);
"""
_REVISION_COLUMNS: Final = (
    "kind, revision, format, loaded_at_us, actor, reason, summary, sha256, size_bytes"
)


class SqliteTechspecStore:
    """ReferenceTableStore and InstallLeaveStore on one SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "FULL") -> None:
        self._path = str(path)
        self._synchronous = checked_synchronous(synchronous)
        self._writer = SqlJournal(
            error_type=TechspecStoreError,
            what="techspec",
            max_batch=MAX_BATCH_OPS,
            queue_size=QUEUE_SIZE,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: open the file, then apply queued operations until cancelled."""
        conn = await trio.to_thread.run_sync(_connect, self._path, self._synchronous)
        try:
            await self._writer.run(conn, task_status=task_status)
        finally:
            conn.close()

    # ------------------------------------------------------------ reference tables

    async def current(self, kind: TableKind) -> TableRevision | None:
        def select(conn: sqlite3.Connection) -> TableRevision | None:
            row = conn.execute(
                f"SELECT {_REVISION_COLUMNS}, document FROM table_revision WHERE kind = ?"
                " ORDER BY revision DESC LIMIT 1",
                (kind,),
            ).fetchone()
            return None if row is None else _revision(row[:-1], bytes(row[-1]))

        return await self._writer.submit(select)

    async def replace(
        self,
        kind: TableKind,
        document: bytes,
        fmt: DocumentFormat,
        *,
        actor: str,
        reason: str,
        summary: str,
        at: dt.datetime,
    ) -> TableRevision:
        check_revision_text(actor, reason, document)
        digest = document_digest(document)
        at_us = to_us(at)

        def insert(conn: sqlite3.Connection) -> TableRevision:
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(revision), 0) FROM table_revision WHERE kind = ?", (kind,)
            ).fetchone()
            revision = int(last) + 1
            conn.execute(
                f"INSERT INTO table_revision ({_REVISION_COLUMNS}, document)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    revision,
                    fmt,
                    at_us,
                    actor,
                    reason,
                    summary,
                    digest,
                    len(document),
                    document,
                ),
            )
            # The audit rows stay; only old documents go, so the file stays bounded.
            conn.execute(
                "UPDATE table_revision SET document = x'' WHERE kind = ? AND revision <= ?",
                (kind, revision - KEEP_DOCUMENTS),
            )
            return TableRevision(
                kind=kind,
                revision=revision,
                format=fmt,
                loaded_at=from_us(at_us),
                actor=actor,
                reason=reason,
                summary=summary,
                sha256=digest,
                size_bytes=len(document),
                document=document,
            )

        return await self._writer.submit(insert)

    async def audit(self, kind: TableKind, *, limit: int = MAX_AUDIT_ROWS) -> list[TableRevision]:
        bounded = max(0, min(limit, MAX_AUDIT_ROWS))

        def select(conn: sqlite3.Connection) -> list[TableRevision]:
            rows = conn.execute(
                f"SELECT {_REVISION_COLUMNS} FROM table_revision WHERE kind = ?"
                " ORDER BY revision DESC LIMIT ?",
                (kind, bounded),
            ).fetchall()
            return [_revision(row, b"") for row in rows]

        return await self._writer.submit(select)

    # ------------------------------------------------------------ install and leave

    async def get(self, hub_id: str) -> InstallLeaveCase | None:
        def select(conn: sqlite3.Connection) -> InstallLeaveCase | None:
            return _stored_case(conn, hub_id)

        return await self._writer.submit(select)

    async def save(
        self, before: InstallLeaveCase | None, after: InstallLeaveCase, *, at: dt.datetime
    ) -> None:
        if before is not None and before.hub_id != after.hub_id:
            raise ValueError("a case moves on for one hub only")
        record = encode_case(after)
        at_us = to_us(at)

        def upsert(conn: sqlite3.Connection) -> None:
            stored = _stored_case(conn, after.hub_id)
            if stored != before:
                raise StaleCase(f"the case of hub {after.hub_id} changed; read it again")
            conn.execute(
                "INSERT INTO install_leave_case (hub_id, state, notified_at_us, record)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (hub_id) DO UPDATE SET state = excluded.state,"
                " notified_at_us = excluded.notified_at_us, record = excluded.record",
                (after.hub_id, after.state, to_us(after.notified_at), record),
            )
            conn.execute(
                "INSERT INTO install_leave_event (hub_id, at_us, record) VALUES (?, ?, ?)",
                (after.hub_id, at_us, record),
            )

        await self._writer.submit(upsert)

    async def open_cases(self) -> list[InstallLeaveCase]:
        def select(conn: sqlite3.Connection) -> list[InstallLeaveCase]:
            rows = conn.execute(
                "SELECT record FROM install_leave_case WHERE state != 'closed'"
                " ORDER BY notified_at_us, hub_id"
            ).fetchall()
            return [decode_case(bytes(row[0])) for row in rows]

        return await self._writer.submit(select)

    async def history(self, hub_id: str) -> list[CaseEvent]:
        def select(conn: sqlite3.Connection) -> list[CaseEvent]:
            rows = conn.execute(
                "SELECT at_us, record FROM install_leave_event WHERE hub_id = ? ORDER BY id"
                " LIMIT ?",
                (hub_id, MAX_HISTORY_ROWS),
            ).fetchall()
            return [
                CaseEvent(hub_id=hub_id, at=from_us(at_us), case=decode_case(bytes(record)))
                for at_us, record in rows
            ]

        return await self._writer.submit(select)

    @property
    def queue_depth(self) -> int:
        return self._writer.queue_depth


@asynccontextmanager
async def open_techspec_store(
    path: str | Path, *, synchronous: Synchronous = "FULL"
) -> AsyncIterator[SqliteTechspecStore]:
    """A running store for the duration of the block (its writer in a child nursery)."""
    store = SqliteTechspecStore(path, synchronous=synchronous)
    async with running(store):
        yield store


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    return open_database(path, synchronous, schema=_SCHEMA)


def _stored_case(conn: sqlite3.Connection, hub_id: str) -> InstallLeaveCase | None:
    row = conn.execute(
        "SELECT record FROM install_leave_case WHERE hub_id = ?", (hub_id,)
    ).fetchone()
    return None if row is None else decode_case(bytes(row[0]))


def _revision(row: tuple[Any, ...], document: bytes) -> TableRevision:
    return TableRevision(
        kind=row[0],
        revision=row[1],
        format=row[2],
        loaded_at=from_us(row[3]),
        actor=row[4],
        reason=row[5],
        summary=row[6],
        sha256=row[7],
        size_bytes=row[8],
        document=document,
    )
