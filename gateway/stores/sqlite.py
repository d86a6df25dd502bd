"""How hard the gateway's SQLite journals hold on to a commit.

FULL (the default): every commit is fsynced; acknowledged work survives a power
cut. NORMAL (WAL): commits reach the OS at once, so they survive a crash or
`kill -9` of the daemon, but the last ones may be lost if the machine loses
power; each answer no longer waits for a disk flush. `[storage] synchronous`.
"""

from __future__ import annotations

from typing import Literal

Synchronous = Literal["FULL", "NORMAL"]


def checked_synchronous(value: str) -> str:
    # Interpolated into a PRAGMA: only the two known words may pass.
    if value not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {value!r}")
    return value
