"""Anomaly-detection state that must outlive the process: rules in force, their audit
trail, and the in-process store's window counts.

`ThresholdStateStore` is what the gateway needs; `SqliteThresholdStateStore` keeps it
in one SQLite file in the state directory (WAL; the configured synchronous level),
every change one transaction: the rules in force and the audit entry that explains
them are replaced together. Blocking calls run in a worker thread, one at a time.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import msgspec
import trio

from gateway.stores.sqlite import BUSY_TIMEOUT_SECONDS, open_database
from gateway.stores.times import from_us, to_us
from thresholds.rules_state import RulesAuditEntry, RulesRecord
from thresholds.snapshot import CounterKey, CounterState, decode_state, encode_state

# Named, not __name__: the name operators filter on outlives a move of the module.
log = logging.getLogger("thresholds.state_store")

MAX_AUDIT_ROWS: Final = 1000  # audit entries returned per call, newest first

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rules_in_force (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    source TEXT NOT NULL,
    toml BLOB NOT NULL,
    file_sha256 TEXT NOT NULL,
    set_at_us INTEGER NOT NULL,
    set_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rules_audit (
    id INTEGER PRIMARY KEY,
    at_us INTEGER NOT NULL,
    source TEXT NOT NULL,
    by TEXT NOT NULL,
    rules INTEGER NOT NULL,
    attribute_limits INTEGER NOT NULL,
    file_sha256 TEXT NOT NULL,
    note TEXT NOT NULL,
    toml BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS window_count (
    user_id TEXT NOT NULL,
    srv TEXT NOT NULL,
    window_seconds INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (user_id, srv, window_seconds)
) WITHOUT ROWID;
"""

T = TypeVar("T")


class ThresholdStateError(Exception):
    """We broke: the state file could not be read or written."""


class ThresholdStateStore(Protocol):
    async def load_rules(self) -> RulesRecord | None: ...
    async def replace_rules(self, record: RulesRecord, audit: RulesAuditEntry) -> None: ...
    async def audit(self, limit: int = MAX_AUDIT_ROWS) -> list[RulesAuditEntry]: ...
    async def load_counts(self) -> dict[CounterKey, CounterState]: ...
    async def save_counts(
        self, live: Mapping[CounterKey, CounterState], gone: Sequence[CounterKey]
    ) -> None: ...


class SqliteThresholdStateStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._limiter = trio.CapacityLimiter(1)  # one thread on the connection at a time

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "FULL") -> SqliteThresholdStateStore:
        try:
            return cls(await trio.to_thread.run_sync(_connect, path, synchronous))
        except sqlite3.Error as exc:
            raise ThresholdStateError(f"threshold state file: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    async def load_rules(self) -> RulesRecord | None:
        return await self._run(_select_rules)

    async def replace_rules(self, record: RulesRecord, audit: RulesAuditEntry) -> None:
        def replace(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO rules_in_force (id, source, toml, file_sha256, set_at_us,"
                " set_by) VALUES (1, ?, ?, ?, ?, ?)",
                (
                    record.source,
                    record.toml,
                    record.file_sha256,
                    to_us(record.set_at),
                    record.set_by,
                ),
            )
            conn.execute(
                "INSERT INTO rules_audit (at_us, source, by, rules, attribute_limits,"
                " file_sha256, note, toml) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    to_us(audit.at),
                    audit.source,
                    audit.by,
                    audit.rules,
                    audit.attribute_limits,
                    audit.file_sha256,
                    audit.note,
                    audit.toml,
                ),
            )

        await self._run(replace, write=True)

    async def audit(self, limit: int = MAX_AUDIT_ROWS) -> list[RulesAuditEntry]:
        def select(conn: sqlite3.Connection) -> list[RulesAuditEntry]:
            rows = conn.execute(
                "SELECT at_us, source, by, rules, attribute_limits, file_sha256, note, toml"
                " FROM rules_audit ORDER BY id DESC LIMIT ?",
                (max(0, min(limit, MAX_AUDIT_ROWS)),),
            )
            return [
                RulesAuditEntry(
                    at=from_us(r[0]),
                    source=r[1],
                    by=r[2],
                    rules=r[3],
                    attribute_limits=r[4],
                    file_sha256=r[5],
                    note=r[6],
                    toml=bytes(r[7]),
                )
                for r in rows
            ]

        return await self._run(select)

    async def load_counts(self) -> dict[CounterKey, CounterState]:
        def select(conn: sqlite3.Connection) -> dict[CounterKey, CounterState]:
            saved: dict[CounterKey, CounterState] = {}
            for user_id, srv, window, raw in conn.execute(
                "SELECT user_id, srv, window_seconds, state FROM window_count"
            ):
                try:
                    saved[(user_id, srv, window)] = decode_state(bytes(raw))
                except msgspec.DecodeError as exc:  # written by another version: start at 0
                    log.warning("window count %s/%s/%d unreadable: %s", user_id, srv, window, exc)
            return saved

        return await self._run(select)

    async def save_counts(
        self, live: Mapping[CounterKey, CounterState], gone: Sequence[CounterKey]
    ) -> None:
        states = list(live.items())  # frozen values: safe to encode in the worker thread

        def save(conn: sqlite3.Connection) -> None:
            rows = [(*key, encode_state(state)) for key, state in states]
            conn.executemany(
                "INSERT OR REPLACE INTO window_count (user_id, srv, window_seconds, state)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "DELETE FROM window_count WHERE user_id = ? AND srv = ? AND window_seconds = ?",
                gone,
            )

        await self._run(save, write=True)

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        call = functools.partial(_transaction, self._conn, work, write)
        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise ThresholdStateError(f"threshold state file: {exc}") from exc


@asynccontextmanager
async def open_threshold_state(
    path: Path, *, synchronous: str = "FULL"
) -> AsyncIterator[SqliteThresholdStateStore]:
    store = await SqliteThresholdStateStore.open(path, synchronous=synchronous)
    try:
        yield store
    finally:
        store.close()


def peek_rules(path: Path) -> RulesRecord | None:
    """The stored rules record, read without a running gateway (None if there is none)."""
    if not path.exists():
        return None
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        return _select_rules(conn)
    except sqlite3.OperationalError:  # no such table: nothing was ever stored
        return None
    finally:
        conn.close()


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    return open_database(path, synchronous, schema=_SCHEMA)


def _transaction(
    conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], write: bool
) -> T:
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _select_rules(conn: sqlite3.Connection) -> RulesRecord | None:
    row: tuple[Any, ...] | None = conn.execute(
        "SELECT source, toml, file_sha256, set_at_us, set_by FROM rules_in_force WHERE id = 1"
    ).fetchone()
    if row is None:
        return None
    return RulesRecord(
        source=row[0], toml=bytes(row[1]), file_sha256=row[2], set_at=from_us(row[3]), set_by=row[4]
    )
