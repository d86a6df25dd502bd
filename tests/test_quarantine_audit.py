"""Release and delete decisions are audited with the state change, durably, per request."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from gateway.core.clock import FixedClock
from gateway.stores.quarantine import NotHeld, UnknownEventRef, open_quarantine_store
from gateway.stores.quarantine_audit import Decision
from tests.conftest import QuarantineOpener
from tests.test_quarantine import START, item

RETENTION_SECONDS = 3600.0


async def test_decisions_are_kept_with_the_request_across_restarts(
    quarantine_opener: QuarantineOpener,
) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        released = await store.hold(item(1, clock))
        deleted = await store.hold(item(2, clock))
        untouched = await store.hold(item(3, clock))
        clock.advance(60)
        await store.begin_release(released, 0, Decision(by="10.0.0.5:4000", reason="campaign"))
        await store.delete(deleted, Decision(by="10.0.0.5:4001", reason="<b>dup</b>"))
    async with quarantine_opener(clock) as store:
        [release] = await store.audit(released)
        assert (release.action, release.by, release.reason) == (
            "release",
            "10.0.0.5:4000",
            "campaign",
        )
        assert release.at == START + dt.timedelta(seconds=60)
        [delete] = await store.audit(deleted)
        assert (delete.action, delete.reason) == ("delete", "<b>dup</b>")  # stored as given
        assert await store.audit(untouched) == []
        assert await store.count("held") == 1
        assert await store.count("deleted") == 1
        assert await store.count("releasing") == 1


async def test_a_refused_decision_leaves_no_audit_entry(
    quarantine_opener: QuarantineOpener,
) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        ref = await store.hold(item(1, clock))
        await store.delete(ref, Decision(by="a", reason="first"))
        with pytest.raises(NotHeld):
            await store.delete(ref, Decision(by="b", reason="second"))
        with pytest.raises(NotHeld):
            await store.begin_release(ref, 0, Decision(by="c", reason="third"))
        with pytest.raises(UnknownEventRef):
            await store.delete(ref + 1, Decision(by="d", reason="nothing there"))
        assert [e.reason for e in await store.audit(ref)] == ["first"]
        assert await store.audit(ref + 1) == []


async def test_a_decision_without_a_reason_is_audited_and_none_is_not(
    quarantine_opener: QuarantineOpener,
) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        with_decision = await store.hold(item(1, clock))
        without = await store.hold(item(2, clock))
        await store.begin_release(with_decision, 0, Decision(by="cli"))
        await store.begin_release(without, 0)
        assert [(e.by, e.reason) for e in await store.audit(with_decision)] == [("cli", "")]
        assert await store.audit(without) == []


async def test_entries_go_when_their_request_is_purged(quarantine_opener: QuarantineOpener) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        old = await store.hold(item(1, clock))
        await store.delete(old, Decision(by="a", reason="old"))
        clock.advance(RETENTION_SECONDS - 10)
        recent = await store.hold(item(2, clock))
        await store.delete(recent, Decision(by="a", reason="recent"))
        clock.advance(20)
        await store.expire(RETENTION_SECONDS)
        assert await store.audit(old) == []
        assert [e.reason for e in await store.audit(recent)] == ["recent"]


async def test_a_file_from_before_the_audit_gains_the_table(tmp_path: Path) -> None:
    path, clock = tmp_path / "q.sqlite", FixedClock(START)
    async with open_quarantine_store(path, clock) as store:
        ref = await store.hold(item(1, clock))
    with sqlite3.connect(path) as conn:  # as an earlier version left it
        conn.execute("DROP TABLE quarantine_audit")
    async with open_quarantine_store(path, clock) as store:
        await store.delete(ref, Decision(by="a", reason="after the upgrade"))
        assert [e.reason for e in await store.audit(ref)] == ["after the upgrade"]
