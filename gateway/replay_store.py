"""The replay counters in one SQLite file: the blocking layer under `SharedReplayGuard`.

`ReplayDatabase` opens the file (WAL, the configured synchronous level), creates or
migrates the schema, and runs `gateway.replay.decide` over `_SqlCounterBook`, the
CounterBook whose facts are rows, inside one BEGIN IMMEDIATE ... COMMIT per batch. It
blocks: use it from one thread at a time. The rules stay in `gateway.replay`, which
re-exports `ReplayDatabase`.

`gateway.replay` imports this module, so this one imports the rules inside the
methods that use them: a top-level import back would be an import cycle.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from gateway.sqlite_durability import Synchronous, checked_synchronous
from mmc.identifiers import Eui64, RequestId

if TYPE_CHECKING:
    from gateway.replay import ReplayGuard, ReplayVerdict

# How long a transaction waits for another process's write lock before failing.
DEFAULT_BUSY_TIMEOUT_SECONDS = 5.0
# SQLite's own busy handler sleeps 1, 2, 5 ... then 100 ms between tries, so a worker
# behind busy peers misses free moments for up to 100 ms at a time (bench: p99 admit of
# 11-80 ms with 2-4 workers, 3-7 ms polling as below). We poll the lock ourselves.
BUSY_POLL_MIN_SECONDS = 0.000_1
BUSY_POLL_MAX_SECONDS = 0.001

_T = TypeVar("_T")

# SQLite integers are signed 64-bit; RequestID counters are unsigned 64-bit. Shifting
# by 2**63 keeps every counter representable and keeps their order.
_SHIFT = 2**63
_SCHEMA_VERSION = 1
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

    def consume_signed_pre_command(self, originator: Eui64, counter: int) -> bool:
        if not self._db.execute(
            "DELETE FROM open_pre_command WHERE originator = ? AND counter = ?",
            (originator, counter - _SHIFT),
        ).rowcount:
            return False
        self._uncount(originator)
        return True

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
    ) -> None:
        self._busy_timeout_seconds = busy_timeout_seconds
        self._synchronous = synchronous
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread off
        # because trio's worker threads vary; SharedReplayGuard's limiter serialises use.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            # 0: a lock held by another process is reported at once, and _wait_out_busy
            # waits for it (up to busy_timeout_seconds), polling faster than SQLite would.
            self._db.execute("PRAGMA busy_timeout = 0")
            self._wait_out_busy(self._configure)
        except BaseException:
            self._db.close()
            raise

    def decide_batch(self, requests: Sequence[tuple[RequestId, int]]) -> list[ReplayVerdict]:
        """Decide (RequestID, CV) pairs in order in one transaction: one fsync, all or none."""
        return self._wait_out_busy(
            lambda: self._transaction(lambda: self.decide_in_transaction(self._db, requests))
        )

    def decide_in_transaction(
        self, db: sqlite3.Connection, requests: Sequence[tuple[RequestId, int]]
    ) -> list[ReplayVerdict]:
        """Inside the open transaction, in order: each request sees those before it."""
        from gateway import replay  # here, not at the top: see the module docstring

        # The cap on open allowances is a rule: read from gateway.replay, as ReplayGuard does.
        book = _SqlCounterBook(db, replay.MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR)
        return [replay.decide(book, request_id, variant) for request_id, variant in requests]

    def load(self) -> ReplayGuard:
        """An in-memory copy of what is committed now."""
        return self._wait_out_busy(lambda: self._transaction(self._copy, "DEFERRED"))

    def close(self) -> None:
        self._db.close()

    def _configure(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsynced, so an acknowledged counter survives power loss.
        # NORMAL (an operator's choice): survives a process crash, not a power cut.
        self._db.execute(f"PRAGMA synchronous={checked_synchronous(self._synchronous)}")
        self._transaction(self._ensure_schema)

    def _copy(self) -> ReplayGuard:
        from gateway.replay import ReplayGuard  # here, not at the top: see the module docstring

        last = {
            originator: counter + _SHIFT
            for originator, counter in self._db.execute(
                "SELECT originator, counter FROM last_counter"
            )
        }
        open_pre_commands: dict[Eui64, list[int]] = {}
        for originator, counter in self._db.execute(
            "SELECT originator, counter FROM open_pre_command"
        ):
            open_pre_commands.setdefault(originator, []).append(counter + _SHIFT)
        return ReplayGuard(last, open_pre_commands)

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

    def _ensure_schema(self) -> None:
        # In the write transaction: processes starting together migrate exactly once.
        db = self._db
        [(version,)] = db.execute("PRAGMA user_version").fetchall()
        if version == _SCHEMA_VERSION:
            return
        if version != 0:
            from gateway.replay import ReplayStoreError  # here, not at the top: see the docstring

            raise ReplayStoreError(f"replay database schema {version} is newer than ours")
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'last_counter'"
        ).fetchone()
        for statement in _MIGRATE_FROM_UNVERSIONED if exists else _CREATE_TABLES:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
