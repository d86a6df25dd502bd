"""The open local commands, on SQLite and on Redis: durable, atomic take, bounded by
expiry and a cap. Each test runs on both backends (`open_store`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol

import pytest
import trio

from bench.redis_process import RedisProcess
from gateway.core.config import SharedRedisConfig
from gateway.core.local_commands import IssuedLocalCommand
from gateway.stores.local_commands import DEFAULT_MAX_PER_ORIGINATOR, LocalCommandStore
from gateway.stores.local_commands_redis import open_redis_local_command_store
from gateway.stores.local_commands_sqlite import open_local_command_store
from gateway.stores.redis_shared import open_shared_redis
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


class Opener(Protocol):
    def __call__(
        self, max_per_originator: int = DEFAULT_MAX_PER_ORIGINATOR
    ) -> AbstractAsyncContextManager[LocalCommandStore]: ...


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the store; opening again is another process (or node) on the same state."""
    if request.param == "sqlite":

        def on_sqlite(
            max_per_originator: int = DEFAULT_MAX_PER_ORIGINATOR,
        ) -> AbstractAsyncContextManager[LocalCommandStore]:
            return open_local_command_store(
                tmp_path / "local_commands.sqlite", max_per_originator=max_per_originator
            )

        return on_sqlite
    server: RedisProcess = request.getfixturevalue("redis_server")

    @asynccontextmanager
    async def on_redis(
        max_per_originator: int = DEFAULT_MAX_PER_ORIGINATOR,
    ) -> AsyncIterator[LocalCommandStore]:
        settings = SharedRedisConfig(url=server.url, key_prefix="local-test")
        async with (
            open_shared_redis(settings) as shared,
            open_redis_local_command_store(shared, max_per_originator=max_per_originator) as store,
        ):
            yield store

    return on_redis


async def test_put_get_take_and_survive_a_reopen(open_store: Opener) -> None:
    big = 2**64 - 1  # counters are uint64: the store keeps the whole range
    async with open_store() as store:
        await store.put(command(1000))
        await store.put(command(big))
    async with open_store() as store:  # durable: another process's view
        key = RequestId(USER, ESME, 1000)
        assert await store.get(key, T0) == command(1000)
        assert await store.get(RequestId(USER, ESME, big), T0) == command(big)
        assert await store.get(RequestId(OTHER, ESME, 1000), T0) is None  # another User's
        assert await store.take(key, T0) == command(1000)
        assert await store.take(key, T0) is None  # taken once
        assert await store.get(key, T0) is None


async def test_expired_commands_are_neither_given_nor_taken(open_store: Opener) -> None:
    async with open_store() as store:
        await store.put(command(1, ttl_hours=1))
        later = T0 + dt.timedelta(hours=1)
        key = RequestId(USER, ESME, 1)
        assert await store.get(key, later - dt.timedelta(seconds=1)) is not None
        assert await store.get(key, later) is None
        assert await store.take(key, later) is None
        # A later put sweeps it out of the store.
        await store.put(command(2, at=later))
        assert await store.get(key, T0) is None


async def test_each_originator_keeps_its_newest_up_to_the_cap(open_store: Opener) -> None:
    async with open_store(max_per_originator=3) as store:
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


async def test_concurrent_takes_hand_the_command_to_one_caller(open_store: Opener) -> None:
    async with open_store() as one, open_store() as two:
        await one.put(command(7))
        taken: list[IssuedLocalCommand | None] = []

        async def take(store: LocalCommandStore) -> None:
            taken.append(await store.take(RequestId(USER, ESME, 7), T0))

        async with trio.open_nursery() as nursery:
            for store in (one, two, one, two):
                nursery.start_soon(take, store)
        assert sorted(t is not None for t in taken) == [False, False, False, True]
