"""The one way the gateway opens a SQLite file: private, WAL, the configured durability.

`open_database` creates the file owner-only (0600) before SQLite opens it, so its
`-wal` and `-shm` files get that mode too (gateway/stores/private_files.py); turns
on WAL; sets `synchronous` and how long a statement waits for another process's
write lock; and runs the store's schema. Every store uses it: the replay file, the
outbox and jobs journals, the quarantine, the threshold state, the techspec store.

`synchronous`, `[storage] synchronous`:
FULL (the default): every commit is fsynced; acknowledged work survives a power
cut. NORMAL (WAL): commits reach the OS at once, so they survive a crash or
`kill -9` of the daemon, but the last ones may be lost if the machine loses
power; each answer no longer waits for a disk flush.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from gateway.stores.private_files import prepare_private_sqlite

Synchronous = Literal["FULL", "NORMAL"]

# How long a statement waits for another process holding the file's write lock.
BUSY_TIMEOUT_SECONDS: Final = 5.0


def checked_synchronous(value: str) -> str:
    # Interpolated into a PRAGMA: only the two known words may pass.
    if value not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {value!r}")
    return value


def open_database(
    path: str | Path,
    synchronous: str,
    *,
    busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS,
    schema: str = "",
    setup: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open (creating it 0600) the file at `path`; closed again if any step fails.

    Autocommit mode (`isolation_level=None`): the stores issue BEGIN and COMMIT
    themselves. `check_same_thread` is off because trio's worker threads vary; each
    store serialises its use of the connection. `schema` is a script of idempotent
    statements (CREATE ... IF NOT EXISTS); `setup` then runs on the open connection
    (migrations, seeds). `busy_timeout_seconds=0` hands lock waits to the caller.
    """
    level = checked_synchronous(synchronous)
    prepare_private_sqlite(Path(path))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {level}")
        if schema:
            conn.executescript(schema)
        if setup is not None:
            setup(conn)
    except BaseException:
        conn.close()
        raise
    return conn
