"""The durable quarantine: hold, survive restart, release once, delete, expire."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import trio
from lxml import etree

from gateway.core.clock import FixedClock
from gateway.stores.quarantine import (
    REFS_PER_NODE,
    NotHeld,
    QuarantineItem,
    QuarantineStoreError,
    SqliteQuarantineStore,
    UnknownEventRef,
    open_quarantine_store,
)
from tests.conftest import QuarantineOpener

START = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-01-00-01"
XS = "{http://www.w3.org/2001/XMLSchema}"


def item(n: int, clock: FixedClock, *, user: str = A, srv: str = "4.1.1") -> QuarantineItem:
    return QuarantineItem(
        user_id=user,
        request_id=f"{user}:00-DB-12-34-56-78-90-A0:{1000 + n}",
        srv=srv,
        duis_version="5.4",
        breach="ADUserThresholdBreach",
        held_at=clock.now(),
        raw_request=b"<sr:Request>%d</sr:Request>" % n,
    )


async def hold_all(
    quarantine_opener: QuarantineOpener, clock: FixedClock, items: list[QuarantineItem]
) -> list[int]:
    refs: list[int] = [0] * len(items)
    async with quarantine_opener(clock) as store:
        before = store.transactions

        async def hold_one(i: int) -> None:
            refs[i] = await store.hold(items[i])

        # Concurrent holds: the writer commits them in a few batches, not one each.
        async with trio.open_nursery() as nursery:
            for i in range(len(items)):
                nursery.start_soon(hold_one, i)
        if isinstance(store, SqliteQuarantineStore):
            assert store.transactions - before < len(items)  # grouped: not one fsync each
    return refs


async def test_held_requests_survive_restart_and_release_exactly_once(
    quarantine_opener: QuarantineOpener,
) -> None:
    clock = FixedClock(START)
    items = [item(n, clock) for n in range(50)]
    refs = await hold_all(quarantine_opener, clock, items)
    assert len(set(refs)) == 50

    async with quarantine_opener(clock) as store:  # a new process, same file
        listed = await store.list_requests()
        assert [q.event_ref for q in listed] == sorted(refs)
        by_ref = {int(q.event_ref): q for q in listed}
        for ref, original in zip(refs, items, strict=True):
            q = by_ref[ref]
            assert (q.request_id, q.raw_request, q.held_at) == (
                original.request_id,
                original.raw_request,
                original.held_at,
            )
            assert q.state == "held"
        for ref, original in zip(refs, items, strict=True):
            releasing = await store.begin_release(ref, owner=0)
            assert releasing.raw_request == original.raw_request
            assert (releasing.state, releasing.release_owner) == ("releasing", 0)
            with pytest.raises(NotHeld, match="is being released"):
                await store.begin_release(ref, owner=1)
            await store.finish_release(ref)
            with pytest.raises(NotHeld, match="already released"):
                await store.begin_release(ref, owner=0)
        assert await store.list_requests() == []
        assert len(await store.list_requests(state="released")) == 50

    async with quarantine_opener(clock) as store:  # released stays released
        with pytest.raises(NotHeld):
            await store.begin_release(refs[0], owner=0)


async def test_an_unfinished_release_is_found_again_by_its_owner_only(
    quarantine_opener: QuarantineOpener,
) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        first, second, third = [await store.hold(item(n, clock)) for n in range(3)]
        await store.begin_release(first, owner=0)
        await store.begin_release(second, owner=1)
        with pytest.raises(NotHeld, match="being released"):
            await store.delete(first)
    async with quarantine_opener(clock) as store:  # the process stopped mid-release
        assert [q.event_ref for q in await store.releasing(0)] == [first]
        assert [q.event_ref for q in await store.releasing(1)] == [second]
        assert [q.event_ref for q in await store.list_requests(state="releasing")] == [
            first,
            second,
        ]
        await store.finish_release(first)
        assert await store.releasing(0) == []
        shown = await store.show(first)
        assert shown is not None and shown.state == "released"
        assert [q.event_ref for q in await store.list_requests()] == [third]


async def test_a_file_from_before_the_release_journal_is_migrated(tmp_path: Path) -> None:
    path, clock = tmp_path / "q.sqlite", FixedClock(START)
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE quarantine (event_ref INTEGER PRIMARY KEY AUTOINCREMENT,"
            " user_id TEXT NOT NULL, request_id TEXT NOT NULL, srv TEXT NOT NULL,"
            " duis_version TEXT NOT NULL, breach TEXT NOT NULL, held_at_us INTEGER NOT NULL,"
            " state TEXT NOT NULL DEFAULT 'held', finished_at_us INTEGER,"
            " raw_request BLOB NOT NULL);"
            "INSERT INTO quarantine (user_id, request_id, srv, duis_version, breach,"
            " held_at_us, raw_request) VALUES ('u', 'r', '4.1.1', '5.4', 'b', 0, x'00');"
        )
    async with open_quarantine_store(path, clock) as store:
        [old] = await store.list_requests()
        assert old.release_owner is None
        assert (await store.begin_release(old.event_ref, owner=3)).release_owner == 3


async def test_delete_drops_the_request_and_refuses_release(
    quarantine_opener: QuarantineOpener,
) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        ref = await store.hold(item(1, clock))
        deleted = await store.delete(ref)
        assert deleted.state == "deleted"
        with pytest.raises(NotHeld, match="already deleted"):
            await store.begin_release(ref, owner=0)
        with pytest.raises(NotHeld):
            await store.delete(ref)
        shown = await store.show(ref)
        assert shown is not None and shown.raw_request == b""
        with pytest.raises(UnknownEventRef):
            await store.begin_release(ref + 1000, owner=0)
        assert await store.show(ref + 1000) is None


async def test_refs_are_never_reused_after_delete(quarantine_opener: QuarantineOpener) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        first = await store.hold(item(1, clock))
        await store.expire(0)  # removes the row entirely
        assert await store.show(first) is None
        second = await store.hold(item(2, clock))
        assert second > first


async def test_list_filters(quarantine_opener: QuarantineOpener) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        old_a = await store.hold(item(1, clock, user=A, srv="4.1.1"))
        clock.advance(600)
        new_b = await store.hold(item(2, clock, user=B, srv="2.2"))
        new_a = await store.hold(item(3, clock, user=A, srv="2.2"))
        clock.advance(60)

        async def refs(**kw: object) -> list[int]:
            return [q.event_ref for q in await store.list_requests(**kw)]  # type: ignore[arg-type]

        assert await refs(user_id=A) == [old_a, new_a]
        assert await refs(srv="2.2") == [new_b, new_a]
        assert await refs(user_id=A, srv="2.2") == [new_a]
        assert await refs(min_age_seconds=300) == [old_a]
        assert await refs(min_age_seconds=60) == [old_a, new_b, new_a]
        assert await refs(min_age_seconds=61) == [old_a]
        assert await refs(after_ref=old_a, limit=1) == [new_b]


async def test_expire_returns_what_it_removed(quarantine_opener: QuarantineOpener) -> None:
    clock = FixedClock(START)
    async with quarantine_opener(clock) as store:
        old = await store.hold(item(1, clock))
        released = await store.hold(item(2, clock))
        clock.advance(86_400)
        await store.begin_release(released, owner=0)
        await store.finish_release(released)  # old, but released: not the User's to be told of
        young = await store.hold(item(3, clock))
        expired = await store.expire(86_400)
        assert [q.event_ref for q in expired] == [old]
        assert expired[0].raw_request == item(1, clock).raw_request  # to notify the User
        assert [q.event_ref for q in await store.list_requests()] == [young]
        assert await store.show(released) is not None  # finished a moment ago: kept
        clock.advance(86_400)
        assert [q.event_ref for q in await store.expire(86_400)] == [young]
        assert await store.show(released) is None  # purged after the retention too


async def test_node_id_offsets_refs_and_refs_fit_the_duis_type(
    tmp_path: Path, shared_dir: Path
) -> None:
    # QuarantineEventRef is xs:integer with totalDigits 20 in every DUIS schema.
    for xsd in sorted((shared_dir / "duis" / "xsd").glob("DUIS_Schema_V5.*.xsd")):
        tree = etree.parse(str(xsd))
        element = tree.find(f".//{XS}element[@name='QuarantineEventRef']")
        assert element is not None, xsd.name
        restriction = element.find(f"{XS}simpleType/{XS}restriction")
        assert restriction is not None and restriction.get("base") == "xs:integer"
        assert restriction.find(f"{XS}totalDigits").get("value") == "20"  # type: ignore[union-attr]
    clock = FixedClock(START)
    async with open_quarantine_store(tmp_path / "q.sqlite", clock, node_id=9000) as store:
        ref = await store.hold(item(1, clock))
    assert ref == 9000 * REFS_PER_NODE + 1
    assert ref > 0 and len(str(ref)) <= 20


async def test_database_failure_is_our_fault_not_the_users(tmp_path: Path) -> None:
    path, clock = tmp_path / "q.sqlite", FixedClock(START)
    async with open_quarantine_store(path, clock) as store:
        await store.hold(item(1, clock))
        other = sqlite3.connect(path)
        other.execute("DROP TABLE quarantine")  # someone broke the file under us
        other.commit()
        other.close()
        with pytest.raises(QuarantineStoreError):
            await store.hold(item(2, clock))
    with pytest.raises(QuarantineStoreError, match="not running"):
        await store.hold(item(3, clock))


async def test_naive_times_are_refused(quarantine_opener: QuarantineOpener) -> None:
    clock = FixedClock(START)
    naive = QuarantineItem(
        user_id=A,
        request_id="x",
        srv="4.1.1",
        duis_version="5.4",
        breach="ADDCCThresholdBreach",
        held_at=dt.datetime(2024, 1, 1),
        raw_request=b"",
    )
    async with quarantine_opener(clock) as store:
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.hold(naive)


async def test_errors_in_the_block_come_out_unwrapped(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        async with open_quarantine_store(tmp_path / "q.sqlite", FixedClock(START)):
            raise KeyError("the caller's own error, not an ExceptionGroup")
