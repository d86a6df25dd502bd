"""The replay store on Redis (issue 13): what two nodes share, what a Redis restart keeps,
the audited reset, and the batching that lets concurrent requests share a round trip.
The rules themselves run through test_replay.py's `admit` fixture on every backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from bench.redis_process import RedisClusterProcesses, RedisProcess
from gateway.core.config import SharedRedisConfig
from gateway.core.replay_rules import Admission, ReplayVerdict
from gateway.stores.redis_shared import open_shared_redis
from gateway.stores.replay_redis import RedisReplayStore, key_slot, open_redis_replay_store
from mmc.identifiers import RequestId

SUP = "90-B3-D5-1F-30-01-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
GBCS = bytes.fromhex("dd0000000000004d11")
AT = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)


def rid(counter: int, originator: str = SUP) -> RequestId:
    return RequestId(originator, ESME, counter)


@asynccontextmanager
async def node(server: RedisProcess) -> AsyncIterator[RedisReplayStore]:
    """One node's replay store: its own connection to the shared server."""
    settings = SharedRedisConfig(url=server.url, key_prefix="replay")
    async with open_shared_redis(settings) as shared, open_redis_replay_store(shared) as store:
        yield store


async def test_a_cv5_on_another_node_gets_the_pre_command_issued_on_the_first(
    redis_server: RedisProcess,
) -> None:
    async with node(redis_server) as a, node(redis_server) as b:
        assert await a.admit(rid(20), 4) == Admission(ReplayVerdict.FRESH)
        assert await a.record_pre_command(rid(20), GBCS)
        assert await a.admit(rid(21), 4) == Admission(ReplayVerdict.FRESH)  # none recorded
        assert await b.admit(rid(20), 5) == Admission(ReplayVerdict.FRESH, GBCS)
        assert await a.admit(rid(20), 6) == Admission(ReplayVerdict.REPLAYED)  # spent
        assert not await b.record_pre_command(rid(20), GBCS)  # no allowance left
        assert await b.admit(rid(21), 7) == Admission(ReplayVerdict.FRESH, None)
        assert await b.admit(rid(19), 1) == Admission(ReplayVerdict.REPLAYED)


async def test_acknowledged_counters_survive_a_redis_kill9(redis_server: RedisProcess) -> None:
    async with node(redis_server) as store:
        assert (await store.admit(rid(30), 4)).verdict is ReplayVerdict.FRESH
        assert await store.record_pre_command(rid(30), GBCS)
        assert (await store.admit(rid(31), 1)).verdict is ReplayVerdict.FRESH
    redis_server.kill9()
    redis_server.start()  # appendfsync always: what was acknowledged is in the AOF
    async with node(redis_server) as store:
        assert (await store.admit(rid(31), 1)).verdict is ReplayVerdict.REPLAYED
        assert await store.admit(rid(30), 5) == Admission(ReplayVerdict.FRESH, GBCS)


async def test_an_operator_reset_is_audited_with_what_it_changed(
    redis_server: RedisProcess,
) -> None:
    async with node(redis_server) as store:
        await store.admit(rid(50), 4)
        await store.admit(rid(51), 4)
        lowered = await store.reset_counter(SUP, 40, at=AT, operator="ops", peer="10.0.0.1")
        assert (lowered.old_counter, lowered.new_counter) == (51, 40)
        assert (await store.admit(rid(45), 1)).verdict is ReplayVerdict.FRESH
        forgot = await store.reset_counter(
            SUP, None, at=AT, operator="ops", peer="10.0.0.1", reason="re-keyed"
        )
        assert (forgot.old_counter, forgot.open_pre_commands_dropped) == (45, 2)
        status = await store.status(SUP)
        assert status.last_counter is None and status.open_pre_commands == 0
        assert [r.new_counter for r in status.resets] == [None, 40]  # newest first
        assert status.resets[0] == forgot and status.resets[1] == lowered
        assert (await store.admit(rid(1), 1)).verdict is ReplayVerdict.FRESH


async def test_concurrent_requests_share_round_trips_and_none_is_accepted_twice(
    redis_server: RedisProcess,
) -> None:
    fresh: list[int] = []
    async with node(redis_server) as a, node(redis_server) as b:

        async def send(store: RedisReplayStore, counter: int) -> None:
            if (await store.admit(rid(counter), 1)).verdict is ReplayVerdict.FRESH:
                fresh.append(counter)

        async with trio.open_nursery() as nursery:
            for counter in range(200):
                nursery.start_soon(send, a, counter)
                nursery.start_soon(send, b, counter)  # the same counter on another node
        assert len(fresh) == len(set(fresh))  # waiters wake in any order
        assert (await b.status(SUP)).last_counter == max(fresh)
        assert a.round_trips + b.round_trips < 400 / 4  # batched, not one trip each


def test_cluster_slots_are_computed_as_redis_does() -> None:
    # Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    assert key_slot("foo") == 12182
    assert key_slot("somekey{foo}rest") == key_slot("foo")
    assert key_slot("a{}b") != key_slot("")  # an empty tag hashes the whole key


async def test_on_a_cluster_a_batch_spans_slots_in_one_round_trip(
    redis_cluster: RedisClusterProcesses,
) -> None:
    """Requests of many originators (many slots) waiting together: one batcher round trip
    (a script call per slot, sent together), every verdict right, Pre-Commands across
    two stores (nodes)."""
    settings = SharedRedisConfig(
        mode="cluster", cluster_nodes=tuple(redis_cluster.addresses), key_prefix="replay"
    )
    originators = [f"90-B3-D5-1F-30-01-00-{n:02X}" for n in range(40)]
    assert len({key_slot(f"x:{{{o}}}") for o in originators}) > 3  # really several slots
    verdicts: dict[str, ReplayVerdict] = {}
    async with (
        open_shared_redis(settings) as shared,
        open_redis_replay_store(shared) as a,
        open_redis_replay_store(shared) as b,
    ):

        async def send(originator: str) -> None:
            verdicts[originator] = (await a.admit(rid(70, originator), 4)).verdict

        async with trio.open_nursery() as nursery:
            for originator in originators:
                nursery.start_soon(send, originator)
        assert set(verdicts.values()) == {ReplayVerdict.FRESH} and len(verdicts) == 40
        assert a.round_trips <= 2
        assert await a.record_pre_command(rid(70, originators[7]), GBCS)
        assert await b.admit(rid(70, originators[7]), 5) == Admission(ReplayVerdict.FRESH, GBCS)
        assert await b.admit(rid(70, originators[8]), 1) == Admission(ReplayVerdict.REPLAYED)
