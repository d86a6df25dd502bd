"""The outbox's SQLite layer: schema, connection, batch transactions and row conversion.

Plain functions over a `sqlite3.Connection`, run in a worker thread by the writer in
`gateway.stores.outbox` (which owns the connection and the ordering). Times are stored as
integer microseconds since the epoch, UTC.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any, Final, Literal

import msgspec

from gateway.stores.sqlite import Synchronous, open_database
from gateway.stores.times import from_us

# The schema's CHECK constraints spell the same values.
MessageKind = Literal["response", "alert"]
MessageState = Literal["pending", "delivered", "dead"]


COLUMNS: Final = (  # in StoredMessage order, as row_to_message reads them
    "id, message_id, user_id, user_seq, kind, url, content_type, created_at_us, state,"
    " attempts, last_error, finished_at_us, body"
)
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox_user (
    user_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    user_seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('response', 'alert')),
    url TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    finished_at_us INTEGER,
    body BLOB NOT NULL,
    UNIQUE (user_id, user_seq)
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, user_id, user_seq);
"""


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: int  # arrival order across Users
    message_id: str
    user_id: str
    user_seq: int  # delivery order within the User ID, from 1
    kind: MessageKind
    url: str
    content_type: str
    created_at: dt.datetime
    state: MessageState
    attempts: int  # failed delivery attempts recorded so far
    last_error: str | None
    finished_at: dt.datetime | None  # delivered or dead-lettered at
    body: bytes  # empty once delivered


class OutboxStoreError(Exception):
    """We broke: the database failed or the writer is not running."""


def connect(
    path: str, synchronous: Synchronous = "FULL"
) -> tuple[sqlite3.Connection, dict[str, int], int]:
    """Open (or create) the file; return it with pending counts per User and dead count.

    Pending counts are in the order Users first had work (lowest id first).
    """
    conn = open_database(path, synchronous, schema=_SCHEMA)
    try:
        pending = {
            str(user): int(count)
            for user, count, _ in conn.execute(
                "SELECT user_id, COUNT(*), MIN(id) AS first FROM outbox"
                " WHERE state = 'pending' GROUP BY user_id ORDER BY first"
            )
        }
        (dead,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'dead'").fetchone()
    except sqlite3.Error:
        conn.close()
        raise
    return conn, pending, int(dead)


def row_to_message(r: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        id=r[0],
        message_id=r[1],
        user_id=r[2],
        user_seq=r[3],
        kind=r[4],
        url=r[5],
        content_type=r[6],
        created_at=from_us(r[7]),
        state=r[8],
        attempts=r[9],
        last_error=r[10],
        finished_at=None if r[11] is None else from_us(r[11]),
        body=bytes(r[12]),
    )
