"""The open local commands on SQLite: durable, atomic take, bounded by expiry and a cap."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trio

from gateway.core.local_commands import IssuedLocalCommand
from gateway.stores.local_commands_sqlite import SqliteLocalCommandStore, open_local_command_store
from mmc.identifiers import RequestId

T0 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
USER = "90-B3-D5-1F-30-01-00-00"
OTHER = "90-B3-D5-1F-30-03-00-00"
ESME = "00-DB-12-34-56-78-90-A0"


def command(
    counter: int, *, user: str = USER, at: dt.datetime = T0, ttl_hours: float = 24
) -> IssuedLocalCommand:
    return IssuedLocalCommand(
        request_id=str(RequestId(user, ESME, counter)),
        version="5.4",
        srv_variant="4.1.1",
        command_variant=2,
        gbcs=bytes([0xDD, counter % 256]),
        issued_at=at,
        expires_at=at + dt.timedelta(hours=ttl_hours),
    )


async def test_put_get_take_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "local_commands.sqlite"
    big = 2**64 - 1  # counters are uint64: the store keeps the whole range
    async with open_local_command_store(path) as store:
        await store.put(command(1000))
        await store.put(command(big))
    async with open_local_command_store(path) as store:  # durable: another process's view
        key = RequestId(USER, ESME, 1000)
        assert await store.get(key, T0) == command(1000)
        assert await store.get(RequestId(USER, ESME, big), T0) == command(big)
        assert await store.get(RequestId(OTHER, ESME, 1000), T0) is None  # another User's
        assert await store.take(key, T0) == command(1000)
        assert await store.take(key, T0) is None  # taken once
        assert await store.get(key, T0) is None


async def test_expired_commands_are_neither_given_nor_taken(tmp_path: Path) -> None:
    async with open_local_command_store(tmp_path / "l.sqlite") as store:
        await store.put(command(1, ttl_hours=1))
        later = T0 + dt.timedelta(hours=1)
        key = RequestId(USER, ESME, 1)
        assert await store.get(key, later - dt.timedelta(seconds=1)) is not None
        assert await store.get(key, later) is None
        assert await store.take(key, later) is None
        # A later put sweeps it out of the file.
        await store.put(command(2, at=later))
        assert await store.get(key, T0) is None


async def test_each_originator_keeps_its_newest_up_to_the_cap(tmp_path: Path) -> None:
    async with open_local_command_store(tmp_path / "l.sqlite", max_per_originator=3) as store:
        for counter in range(1, 6):
            await store.put(command(counter, at=T0 + dt.timedelta(seconds=counter)))
        await store.put(command(1, user=OTHER))
        kept = [c for c in range(1, 6) if await store.get(RequestId(USER, ESME, c), T0)]
        assert kept == [3, 4, 5]  # the oldest went first
        assert await store.get(RequestId(OTHER, ESME, 1), T0) is not None  # its own cap
        # Taking one frees a place: the next put drops nothing.
        await store.take(RequestId(USER, ESME, 3), T0)
        await store.put(command(6, at=T0 + dt.timedelta(seconds=6)))
        kept = [c for c in range(1, 7) if await store.get(RequestId(USER, ESME, c), T0)]
        assert kept == [4, 5, 6]
        # Putting the same RequestID again replaces it, and counts once.
        await store.put(command(6, at=T0 + dt.timedelta(seconds=7)))
        kept = [c for c in range(1, 7) if await store.get(RequestId(USER, ESME, c), T0)]
        assert kept == [4, 5, 6]


async def test_concurrent_takes_hand_the_command_to_one_caller(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with open_local_command_store(path) as one, open_local_command_store(path) as two:
        await one.put(command(7))
        taken: list[IssuedLocalCommand | None] = []

        async def take(store: SqliteLocalCommandStore) -> None:
            taken.append(await store.take(RequestId(USER, ESME, 7), T0))

        async with trio.open_nursery() as nursery:
            for store in (one, two, one, two):
                nursery.start_soon(take, store)
        assert sorted(t is not None for t in taken) == [False, False, False, True]
