"""The open local commands on SQLite: `local_commands.sqlite` in the state directory.

`LocalCommandStore` (gateway/stores/local_commands.py) over one connection, as the
techspec store does it: one writer task owns the connection and runs each operation
in a worker thread, grouping what is queued into one transaction
(gateway/stores/group_commit.py); WAL, `synchronous` as configured, so a command is on
disk before its LocalCommand goes back to the User. Every worker opens the same file:
SQLite's write lock serialises them, so an 8.13 can reach any worker, and `take`
(SELECT and DELETE in one transaction) hands a command to one caller only.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import trio

from gateway.core.local_commands import IssuedLocalCommand
from gateway.stores.group_commit import SqlJournal, running
from gateway.stores.local_commands import (
    DEFAULT_MAX_PER_ORIGINATOR,
    LocalCommandStoreError,
    decode_command,
    encode_command,
)
from gateway.stores.sqlite import Synchronous, checked_synchronous, open_database
from gateway.stores.times import to_us
from mmc.identifiers import RequestId

QUEUE_SIZE: Final = 1024  # operations waiting for the writer; callers wait beyond it
MAX_BATCH_OPS: Final = 256  # operations per transaction (one fsync)
EXPIRED_PER_PUT: Final = 64  # expired rows each put removes: expiry keeps pace, bounded
# SQLite integers are signed 64-bit, RequestID counters unsigned: shifted, order kept.
_SHIFT: Final = 2**63

# open_count keeps each originator's number of rows, so the cap costs O(1) per put.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS local_command (
    originator TEXT NOT NULL,
    target TEXT NOT NULL,
    counter INTEGER NOT NULL,
    issued_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (originator, target, counter)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS local_command_expiry ON local_command (expires_at_us);
CREATE INDEX IF NOT EXISTS local_command_age ON local_command (originator, issued_at_us);
CREATE TABLE IF NOT EXISTS open_count (
    originator TEXT PRIMARY KEY,
    open INTEGER NOT NULL
) WITHOUT ROWID;
"""
_PK: Final = "originator = ? AND target = ? AND counter = ?"


class SqliteLocalCommandStore:
    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        max_per_originator: int = DEFAULT_MAX_PER_ORIGINATOR,
    ) -> None:
        if max_per_originator < 1:
            raise ValueError("max_per_originator must be at least 1")
        self._path = str(path)
        self._synchronous = checked_synchronous(synchronous)
        self._max_per_originator = max_per_originator
        self._writer = SqlJournal(
            error_type=LocalCommandStoreError,
            what="local commands",
            max_batch=MAX_BATCH_OPS,
            queue_size=QUEUE_SIZE,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        conn = await trio.to_thread.run_sync(_connect, self._path, self._synchronous)
        try:
            await self._writer.run(conn, task_status=task_status)
        finally:
            conn.close()

    async def put(self, command: IssuedLocalCommand) -> None:
        key = _key(command.key)
        issued_us, expires_us = to_us(command.issued_at), to_us(command.expires_at)
        record = encode_command(command)
        cap = self._max_per_originator

        def insert(conn: sqlite3.Connection) -> None:
            _drop_expired(conn, issued_us)
            new = conn.execute(f"SELECT 1 FROM local_command WHERE {_PK}", key).fetchone() is None
            conn.execute(
                "INSERT OR REPLACE INTO local_command (originator, target, counter,"
                " issued_at_us, expires_at_us, record) VALUES (?, ?, ?, ?, ?, ?)",
                (*key, issued_us, expires_us, record),
            )
            if new:
                _count(conn, key[0], +1)
            _drop_beyond_cap(conn, key[0], cap)

        await self._writer.submit(insert)

    async def get(self, request_id: RequestId, now: dt.datetime) -> IssuedLocalCommand | None:
        args = (*_key(request_id), to_us(now))

        def select(conn: sqlite3.Connection) -> IssuedLocalCommand | None:
            row = conn.execute(
                f"SELECT record FROM local_command WHERE {_PK} AND expires_at_us > ?", args
            ).fetchone()
            return None if row is None else decode_command(bytes(row[0]))

        return await self._writer.submit(select)

    async def take(self, request_id: RequestId, now: dt.datetime) -> IssuedLocalCommand | None:
        key = _key(request_id)
        now_us = to_us(now)

        def delete(conn: sqlite3.Connection) -> IssuedLocalCommand | None:
            row = conn.execute(
                f"DELETE FROM local_command WHERE {_PK} RETURNING record, expires_at_us", key
            ).fetchone()
            if row is None:
                return None
            _count(conn, key[0], -1)
            return None if row[1] <= now_us else decode_command(bytes(row[0]))

        return await self._writer.submit(delete)

    @property
    def queue_depth(self) -> int:
        return self._writer.queue_depth


@asynccontextmanager
async def open_local_command_store(
    path: str | Path,
    *,
    synchronous: Synchronous = "FULL",
    max_per_originator: int = DEFAULT_MAX_PER_ORIGINATOR,
) -> AsyncIterator[SqliteLocalCommandStore]:
    """A running store for the duration of the block (its writer in a child nursery)."""
    store = SqliteLocalCommandStore(
        path, synchronous=synchronous, max_per_originator=max_per_originator
    )
    async with running(store):
        yield store


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    return open_database(path, synchronous, schema=_SCHEMA)


def _key(request_id: RequestId) -> tuple[str, str, int]:
    return request_id.originator, request_id.target, request_id.counter - _SHIFT


def _count(conn: sqlite3.Connection, originator: str, change: int) -> None:
    conn.execute(
        "INSERT INTO open_count (originator, open) VALUES (?, ?) ON CONFLICT (originator)"
        " DO UPDATE SET open = open + excluded.open",
        (originator, change),
    )


def _drop_expired(conn: sqlite3.Connection, now_us: int) -> None:
    gone = conn.execute(
        "DELETE FROM local_command WHERE (originator, target, counter) IN ("
        " SELECT originator, target, counter FROM local_command WHERE expires_at_us <= ?"
        " LIMIT ?) RETURNING originator",
        (now_us, EXPIRED_PER_PUT),
    ).fetchall()
    for (originator,) in gone:
        _count(conn, originator, -1)


def _drop_beyond_cap(conn: sqlite3.Connection, originator: str, cap: int) -> None:
    (count,) = conn.execute(
        "SELECT open FROM open_count WHERE originator = ?", (originator,)
    ).fetchone()
    if count <= cap:
        return
    dropped = conn.execute(
        "DELETE FROM local_command WHERE (originator, target, counter) IN ("
        " SELECT originator, target, counter FROM local_command WHERE originator = ?"
        " ORDER BY issued_at_us, counter LIMIT ?) RETURNING originator",
        (originator, count - cap),
    ).fetchall()
    _count(conn, originator, -len(dropped))
