"""The replay counters in one SQLite file: the blocking layer under `SharedReplayGuard`.

`ReplayDatabase` opens the file (WAL, the configured synchronous level), creates or
migrates the schema, and runs `gateway.core.replay_rules.decide` over `_SqlCounterBook`, the
CounterBook whose facts are rows, inside one BEGIN IMMEDIATE ... COMMIT per batch. It
blocks: use it from one thread at a time.

Beside the counters the file holds the open CV 4 allowances with the Pre-Command
issued for each (so every worker, and a restarted process, correlates the CV 5/6/7)
and the audit trail of operator counter resets (`reset_counter`), each written in
the same transaction as the change it records.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal, TypeVar

import msgspec

from gateway.core import replay_rules
from gateway.core.replay_rules import (
    DEFAULT_MAX_COUNTER,
    Admission,
    Allowance,
    ReplayGuard,
    check_counter,
    decide,
)
from gateway.stores.sqlite import Synchronous, open_database
from gateway.stores.times import from_us, to_us
from mmc.identifiers import Eui64, RequestId

# How long a transaction waits for another process's write lock before failing.
DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
# SQLite's own busy handler sleeps 1, 2, 5 ... then 100 ms between tries, so a worker
# behind busy peers misses free moments for up to 100 ms at a time (bench: p99 admit of
# 11-80 ms with 2-4 workers, 3-7 ms polling as below). We poll the lock ourselves.
BUSY_POLL_MIN_SECONDS = 0.000_1
BUSY_POLL_MAX_SECONDS = 0.001
MAX_RESETS_SHOWN: Final = 100  # most recent resets returned per originator
MAX_AUDIT_TEXT_CHARS: Final = 200  # operator name and reason, as stored

_T = TypeVar("_T")

# SQLite integers are signed 64-bit; RequestID counters are unsigned 64-bit. Shifting
# by 2**63 keeps every counter representable and keeps their order.
_SHIFT = 2**63
_SCHEMA_VERSION = 2
_CREATE_TABLES = (
    # open_pre_commands counts the originator's allowances, so the cap costs O(1) per
    # CV 4 instead of a count(*) over up to 65,536 rows inside the shared write lock.
    "CREATE TABLE last_counter (originator TEXT PRIMARY KEY, counter INTEGER NOT NULL, "
    "open_pre_commands INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE TABLE open_pre_command (originator TEXT NOT NULL, counter INTEGER NOT NULL, "
    "PRIMARY KEY (originator, counter)) WITHOUT ROWID",
)
# Files from the single-process gateway (user_version 0) lack the count.
_MIGRATE_FROM_UNVERSIONED = (
    "ALTER TABLE last_counter ADD COLUMN open_pre_commands INTEGER NOT NULL DEFAULT 0",
    "UPDATE last_counter SET open_pre_commands = (SELECT count(*) FROM open_pre_command AS o "
    "WHERE o.originator = last_counter.originator)",
)
# Version 2: the issued Pre-Command beside its allowance (NULL until dispatch records
# it), and the operator's counter resets.
_MIGRATE_TO_2 = (
    "ALTER TABLE open_pre_command ADD COLUMN gbcs BLOB",
    "CREATE TABLE counter_reset (id INTEGER PRIMARY KEY, originator TEXT NOT NULL, "
    "at_us INTEGER NOT NULL, operator TEXT NOT NULL, peer TEXT NOT NULL, reason TEXT NOT NULL, "
    "old_counter INTEGER, new_counter INTEGER, open_pre_commands_dropped INTEGER NOT NULL)",
    "CREATE INDEX counter_reset_by_originator ON counter_reset (originator, id)",
)


class ReplayStoreError(Exception):
    """The replay database did not commit a decision: our fault, not the User's (5xx)."""


class CounterReset(msgspec.Struct, frozen=True, kw_only=True):
    """One operator reset of an originator's counter, as the audit trail keeps it."""

    originator: Eui64
    at: dt.datetime
    operator: str  # who the operator said they are
    peer: str  # the admin client's address
    reason: str
    old_counter: int | None  # None: no counter was recorded
    new_counter: int | None  # None: forgotten, any counter is fresh next
    open_pre_commands_dropped: int


class CounterStatus(msgspec.Struct, frozen=True, kw_only=True):
    originator: Eui64
    last_counter: int | None
    open_pre_commands: int
    resets: tuple[CounterReset, ...]  # newest first, at most MAX_RESETS_SHOWN


class _SqlCounterBook:
    """The CounterBook over an open write transaction (the caller owns BEGIN/COMMIT)."""

    __slots__ = ("_db", "_max_open_pre_commands")

    def __init__(self, db: sqlite3.Connection, max_open_pre_commands: int) -> None:
        self._db = db
        self._max_open_pre_commands = max_open_pre_commands

    def last_counter(self, originator: Eui64) -> int | None:
        row = self._db.execute(
            "SELECT counter FROM last_counter WHERE originator = ?", (originator,)
        ).fetchone()
        return None if row is None else int(row[0]) + _SHIFT

    def check_and_advance(self, originator: Eui64, counter: int) -> bool:
        # The WHERE makes the write conditional, so the row count is the answer: 1 for a
        # new originator or a higher counter, 0 for a replay (nothing written).
        cursor = self._db.execute(
            "INSERT INTO last_counter (originator, counter) VALUES (?, ?) "
            "ON CONFLICT (originator) DO UPDATE SET counter = excluded.counter "
            "WHERE excluded.counter > last_counter.counter",
            (originator, counter - _SHIFT),
        )
        return cursor.rowcount == 1

    def allow_signed_pre_command(self, originator: Eui64, counter: int) -> None:
        db = self._db
        if not db.execute(
            "INSERT OR IGNORE INTO open_pre_command (originator, counter) VALUES (?, ?)",
            (originator, counter - _SHIFT),
        ).rowcount:
            return
        # fetchall: run the statement to completion so it does not stay active.
        [(open_count,)] = db.execute(
            "UPDATE last_counter SET open_pre_commands = open_pre_commands + 1 "
            "WHERE originator = ? RETURNING open_pre_commands",
            (originator,),
        ).fetchall()
        if open_count > self._max_open_pre_commands:
            # Allowances are made for fresh counters only: the smallest is the oldest.
            db.execute(
                "DELETE FROM open_pre_command WHERE originator = ?1 AND counter = "
                "(SELECT min(counter) FROM open_pre_command WHERE originator = ?1)",
                (originator,),
            )
            self._uncount(originator)

    def consume_signed_pre_command(self, originator: Eui64, counter: int) -> Allowance | None:
        # The allowance and the Pre-Command issued for it go in one statement: a second
        # CV 5/6/7 on this counter, on any worker, finds neither.
        found = self._db.execute(
            "DELETE FROM open_pre_command WHERE originator = ? AND counter = ? RETURNING gbcs",
            (originator, counter - _SHIFT),
        ).fetchall()
        if not found:
            return None
        self._uncount(originator)
        gbcs = found[0][0]
        return Allowance(None if gbcs is None else bytes(gbcs))

    def record_pre_command(self, originator: Eui64, counter: int, gbcs: bytes) -> bool:
        return (
            self._db.execute(
                "UPDATE open_pre_command SET gbcs = ? WHERE originator = ? AND counter = ?",
                (gbcs, originator, counter - _SHIFT),
            ).rowcount
            == 1
        )

    def _uncount(self, originator: Eui64) -> None:
        self._db.execute(
            "UPDATE last_counter SET open_pre_commands = open_pre_commands - 1 "
            "WHERE originator = ?",
            (originator,),
        )


class ReplayDatabase:
    """The shared counters in one SQLite file. Blocking: use from one thread at a time."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        synchronous: Synchronous = "FULL",
        max_counter: int = DEFAULT_MAX_COUNTER,
    ) -> None:
        self._busy_timeout_seconds = busy_timeout_seconds
        self._synchronous = synchronous
        self._max_counter = check_counter(max_counter)
        # Lock waits are ours (busy timeout 0): _wait_out_busy polls faster than SQLite
        # would, up to busy_timeout_seconds; a busy open (workers starting together) is
        # retried whole. check_same_thread is off: SharedReplayGuard's limiter
        # serialises use across trio's worker threads.
        self._db = self._wait_out_busy(
            lambda: open_database(path, synchronous, busy_timeout_seconds=0, setup=_ensure_schema)
        )

    def decide_batch(self, requests: Sequence[tuple[RequestId, int]]) -> list[Admission]:
        """Decide (RequestID, CV) pairs in order in one transaction: one fsync, all or none."""
        return self._wait_out_busy(
            lambda: self._transaction(lambda: self.decide_in_transaction(self._db, requests))
        )

    def decide_in_transaction(
        self, db: sqlite3.Connection, requests: Sequence[tuple[RequestId, int]]
    ) -> list[Admission]:
        """Inside the open transaction, in order: each request sees those before it."""
        # The cap is read at call time, as ReplayGuard reads it, so the two always agree.
        book = _SqlCounterBook(db, replay_rules.MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR)
        return [decide(book, request_id, cv, self._max_counter) for request_id, cv in requests]

    def record_pre_command(self, request_id: RequestId, gbcs: bytes) -> bool:
        """Attach the Pre-Command issued for a CV 4 to its allowance; False if none is open."""
        book = _SqlCounterBook(self._db, replay_rules.MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR)
        return self._wait_out_busy(
            lambda: self._transaction(
                lambda: book.record_pre_command(request_id.originator, request_id.counter, gbcs)
            )
        )

    def status(self, originator: Eui64) -> CounterStatus:
        return self._wait_out_busy(lambda: self._transaction(lambda: self._status(originator)))

    def reset_counter(
        self,
        originator: Eui64,
        to: int | None,
        *,
        at: dt.datetime,
        operator: str,
        peer: str,
        reason: str = "",
    ) -> CounterReset:
        """Set the originator's last counter to `to` (None: forget it and its open
        Pre-Commands), and record who, when, old and new in the same transaction."""
        if to is not None:
            check_counter(to)
        at_us = to_us(at)
        operator, reason = operator[:MAX_AUDIT_TEXT_CHARS], reason[:MAX_AUDIT_TEXT_CHARS]

        def reset() -> CounterReset:
            db = self._db
            old = db.execute(
                "SELECT counter FROM last_counter WHERE originator = ?", (originator,)
            ).fetchone()
            dropped = 0
            if to is None:
                dropped = db.execute(
                    "DELETE FROM open_pre_command WHERE originator = ?", (originator,)
                ).rowcount
                db.execute("DELETE FROM last_counter WHERE originator = ?", (originator,))
            else:
                db.execute(
                    "INSERT INTO last_counter (originator, counter) VALUES (?, ?) "
                    "ON CONFLICT (originator) DO UPDATE SET counter = excluded.counter",
                    (originator, to - _SHIFT),
                )
            record = CounterReset(
                originator=originator,
                at=from_us(at_us),
                operator=operator,
                peer=peer,
                reason=reason,
                old_counter=None if old is None else int(old[0]) + _SHIFT,
                new_counter=to,
                open_pre_commands_dropped=dropped,
            )
            db.execute(
                "INSERT INTO counter_reset (originator, at_us, operator, peer, reason, "
                "old_counter, new_counter, open_pre_commands_dropped) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    originator,
                    at_us,
                    operator,
                    peer,
                    reason,
                    None if old is None else old[0],
                    None if to is None else to - _SHIFT,
                    dropped,
                ),
            )
            return record

        return self._wait_out_busy(lambda: self._transaction(reset))

    def load(self) -> ReplayGuard:
        """An in-memory copy of what is committed now."""
        return self._wait_out_busy(lambda: self._transaction(self._copy, "DEFERRED"))

    def close(self) -> None:
        self._db.close()

    def _status(self, originator: Eui64) -> CounterStatus:
        db = self._db
        row = db.execute(
            "SELECT counter, open_pre_commands FROM last_counter WHERE originator = ?",
            (originator,),
        ).fetchone()
        resets = tuple(
            CounterReset(
                originator=originator,
                at=from_us(at_us),
                operator=operator,
                peer=peer,
                reason=reason,
                old_counter=None if old is None else old + _SHIFT,
                new_counter=None if new is None else new + _SHIFT,
                open_pre_commands_dropped=dropped,
            )
            for at_us, operator, peer, reason, old, new, dropped in db.execute(
                "SELECT at_us, operator, peer, reason, old_counter, new_counter, "
                "open_pre_commands_dropped FROM counter_reset WHERE originator = ? "
                "ORDER BY id DESC LIMIT ?",
                (originator, MAX_RESETS_SHOWN),
            )
        )
        return CounterStatus(
            originator=originator,
            last_counter=None if row is None else int(row[0]) + _SHIFT,
            open_pre_commands=0 if row is None else int(row[1]),
            resets=resets,
        )

    def _copy(self) -> ReplayGuard:
        last = {
            originator: counter + _SHIFT
            for originator, counter in self._db.execute(
                "SELECT originator, counter FROM last_counter"
            )
        }
        open_pre_commands: dict[Eui64, dict[int, bytes | None]] = {}
        for originator, counter, gbcs in self._db.execute(
            "SELECT originator, counter, gbcs FROM open_pre_command"
        ):
            allowances = open_pre_commands.setdefault(originator, {})
            allowances[counter + _SHIFT] = None if gbcs is None else bytes(gbcs)
        return ReplayGuard(last, open_pre_commands, max_counter=self._max_counter)

    def _wait_out_busy(self, work: Callable[[], _T]) -> _T:
        # Retrying `work` whole is safe: a busy error rolls its transaction back first.
        deadline = time.monotonic() + self._busy_timeout_seconds
        pause = BUSY_POLL_MIN_SECONDS
        while True:
            try:
                return work()
            except sqlite3.OperationalError as exc:
                # The low byte: SQLITE_BUSY_RECOVERY (after a crash) is SQLITE_BUSY too.
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, BUSY_POLL_MAX_SECONDS)

    def _transaction(
        self, work: Callable[[], _T], mode: Literal["IMMEDIATE", "DEFERRED"] = "IMMEDIATE"
    ) -> _T:
        # IMMEDIATE takes the write lock first, so what we read is what we write over:
        # no other process can commit in between.
        db = self._db
        db.execute(f"BEGIN {mode}")
        try:
            result = work()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result


def _ensure_schema(db: sqlite3.Connection) -> None:
    # In one write transaction: processes starting together migrate exactly once.
    db.execute("BEGIN IMMEDIATE")
    try:
        _migrate(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _migrate(db: sqlite3.Connection) -> None:
    [(version,)] = db.execute("PRAGMA user_version").fetchall()
    if version == _SCHEMA_VERSION:
        return
    if version > _SCHEMA_VERSION:
        raise ReplayStoreError(f"replay database schema {version} is newer than ours")
    if version == 0:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'last_counter'"
        ).fetchone()
        for statement in _MIGRATE_FROM_UNVERSIONED if exists else _CREATE_TABLES:
            db.execute(statement)
    for statement in _MIGRATE_TO_2:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
