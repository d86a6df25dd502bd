"""`[storage] synchronous`: every journal honours it; only FULL or NORMAL reach a PRAGMA."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.stores.outbox_sqlite import connect
from gateway.stores.quarantine import _connect as quarantine_connect
from gateway.stores.replay import ReplayDatabase
from gateway.stores.sqlite import checked_synchronous

FULL, NORMAL = 2, 1  # SQLite's numbers for the two levels


@pytest.mark.parametrize(("level", "number"), [("FULL", FULL), ("NORMAL", NORMAL)])
def test_each_journal_uses_the_configured_level(tmp_path: Path, level: str, number: int) -> None:
    replay = ReplayDatabase(tmp_path / "replay.sqlite", synchronous=level)  # type: ignore[arg-type]
    outbox, _, _ = connect(str(tmp_path / "outbox.sqlite"), level)  # type: ignore[arg-type]
    quarantine = quarantine_connect(str(tmp_path / "quarantine.sqlite"), 0, level)
    try:
        for connection in (replay._db, outbox, quarantine):
            assert connection.execute("PRAGMA synchronous").fetchone() == (number,)
    finally:
        replay.close()
        outbox.close()
        quarantine.close()


def test_nothing_else_reaches_a_pragma() -> None:
    with pytest.raises(ValueError):
        checked_synchronous("OFF; DROP TABLE x")
