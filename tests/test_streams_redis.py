"""The jobs journal and the outbox on Redis Streams, on a test-owned redis-server: two
stores on one Redis play two nodes; one stops without a word (its run cancelled, its
leases left to expire) and the other takes its work over."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

from bench.ports import free_ports
from bench.redis_process import RedisClusterProcesses, RedisProcess
from gateway.core.config import Config, SharedRedisConfig, StartupError, StateConfig
from gateway.edge.metrics import Metrics
from gateway.stores.jobs import JobEntry, JobsFull
from gateway.stores.jobs_redis import RedisJobs
from gateway.stores.outbox import (
    DuplicateMessageId,
    NotDeadLettered,
    OutboundMessage,
    UnknownMessage,
)
from gateway.stores.outbox_redis import RedisOutbox, partition_of
from gateway.stores.outbox_sqlite import OutboxStoreError
from gateway.stores.redis_shared import SharedRedis, open_shared_redis
from gateway.stores.redis_streams import ensure_group, entry_number, forget_gone_consumers
from tests.harness import default_config, response_code, running_gateway
from tests.receiver import Receiver
from tests.test_lifecycle_e2e import config_with_receiver

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
LEASE = 0.6  # seconds: short, so a takeover happens within the test
PARTITIONS = 4
WAIT = 20.0  # seconds a test waits for something asynchronous at most


def message(user: str, n: int) -> OutboundMessage:
    return OutboundMessage(
        message_id=f"{user}-{n}",
        user_id=user,
        url=f"http://127.0.0.1:9/{user}",
        body=f"<r>{user} {n}</r>".encode(),
        created_at=T0,
    )


def redeliveries(metrics: Metrics, queue: str) -> float:
    value = metrics.registry.get_sample_value("duisgw_redeliveries_total", {"queue": queue})
    return value or 0.0


@pytest.fixture(params=["single", "cluster"])
def streams_redis(request: pytest.FixtureRequest) -> SharedRedisConfig:
    """A test-owned Redis: one server, or a three-primary Cluster (every key of a script
    must then share a slot: the hash tags are checked for real)."""
    if request.param == "single":
        server: RedisProcess = request.getfixturevalue("redis_server")
        return SharedRedisConfig(url=server.url, key_prefix="t")
    cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
    return SharedRedisConfig(mode="cluster", cluster_nodes=tuple(cluster.addresses), key_prefix="t")


@asynccontextmanager
async def shared_redis(server: RedisProcess) -> AsyncIterator[SharedRedis]:
    async with open_shared_redis(SharedRedisConfig(url=server.url, key_prefix="t")) as shared:
        yield shared


@asynccontextmanager
async def running_outbox(
    shared: SharedRedis, metrics: Metrics | None = None
) -> AsyncIterator[tuple[RedisOutbox, trio.CancelScope]]:
    outbox = RedisOutbox(
        shared,
        partitions=PARTITIONS,
        lease_seconds=LEASE,
        metrics=metrics,
        stream_metrics=metrics,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(outbox.run)
        yield outbox, nursery.cancel_scope
        nursery.cancel_scope.cancel()


async def until(predicate: object) -> None:
    with trio.fail_after(WAIT):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.02)


def test_entry_ids_become_increasing_integers() -> None:
    assert entry_number(b"1700000000000-0") < entry_number("1700000000000-1")
    assert entry_number("1700000000000-99") < entry_number("1700000000001-0")


async def test_outbox_orders_per_user_and_admin_works_from_any_node(
    streams_redis: SharedRedisConfig,
) -> None:
    async with (
        open_shared_redis(streams_redis) as shared,
        running_outbox(shared) as (node_a, _),
    ):
        await until(lambda: len(node_a.held_partitions) == PARTITIONS)
        # A second store, not running: an admin API on another node.
        admin = RedisOutbox(shared, partitions=PARTITIONS, lease_seconds=LEASE)
        for n in range(3):
            await admin.put(message("U1", n))
            await admin.put(message("U2", n))
        with pytest.raises(DuplicateMessageId):
            await admin.put(message("U1", 0))
        await until(lambda: node_a.pending_count("U1") == 3 and node_a.pending_count("U2") == 3)
        await until(lambda: node_a.pending_count() == 6)  # the deployment's depth
        first = await node_a.next_pending("U1")
        assert first is not None and (first.message_id, first.user_seq) == ("U1-0", 1)
        assert first.body == b"<r>U1 0</r>" and first.created_at == T0
        listed = await admin.pending("U1")
        assert [m.user_seq for m in listed] == [1, 2, 3]
        assert [m.id for m in await admin.pending(after_id=listed[0].id)][:2] != []

        await node_a.mark_delivered("U1-0")
        await node_a.record_failure("U1-1", "HTTP 503")
        await node_a.dead_letter("U1-1", "HTTP 404: no")
        after = await node_a.next_pending("U1")
        assert after is not None and after.message_id == "U1-2"
        delivered = await admin.get("U1-0")
        assert delivered is not None and delivered.state == "delivered" and delivered.body == b""

        dead = await admin.dead_letters()
        assert [(m.message_id, m.attempts, m.last_error) for m in dead] == [
            ("U1-1", 2, "HTTP 404: no")
        ]
        with pytest.raises(NotDeadLettered):
            await admin.retry_dead_letter("U1-2")
        with pytest.raises(UnknownMessage):
            await admin.retry_dead_letter("nope")
        await admin.retry_dead_letter("U1-1")  # from the other node
        # The retried letter keeps its sequence: it goes before U1-2 again.
        await until(lambda: node_a.pending_count("U1") == 2)
        again = await node_a.next_pending("U1")
        assert again is not None and (again.message_id, again.user_seq, again.attempts) == (
            "U1-1",
            2,
            0,
        )
        await node_a.dead_letter("U1-1", "gone")
        await admin.discard_dead_letter("U1-1")
        assert await admin.get("U1-1") is None
        assert await admin.dead_letters() == []


async def test_a_silent_node_s_partitions_and_entries_are_taken_over(
    streams_redis: SharedRedisConfig,
) -> None:
    metrics = Metrics()
    async with open_shared_redis(streams_redis) as shared:
        async with running_outbox(shared) as (node_a, stop_a):
            await until(lambda: len(node_a.held_partitions) == PARTITIONS)
            for n in range(4):
                await node_a.put(message("U1", n))
            await until(lambda: node_a.pending_count("U1") == 4)
            await node_a.mark_delivered("U1-0")
            # U1-1 is read (maybe POSTed) when node A goes silent: no lease given back.
            stop_a.cancel()
        async with running_outbox(shared, metrics) as (node_b, _):
            # Node B waits out A's leases (it counts as a live node until then).
            await until(lambda: len(node_b.held_partitions) == PARTITIONS)
            await until(lambda: node_b.pending_count("U1") == 3)
            order = []
            while (found := await node_b.next_pending("U1")) is not None:
                order.append(found.message_id)
                await node_b.mark_delivered(found.message_id)
            assert order == ["U1-1", "U1-2", "U1-3"]
            assert redeliveries(metrics, "outbox") == 3  # read by A, not finished


async def test_two_live_nodes_share_the_partitions(streams_redis: SharedRedisConfig) -> None:
    async with (
        open_shared_redis(streams_redis) as shared,
        running_outbox(shared) as (node_a, _),
        running_outbox(shared) as (node_b, _),
    ):
        await until(
            lambda: len(node_a.held_partitions) == len(node_b.held_partitions) == PARTITIONS // 2
        )
        assert set(node_a.held_partitions).isdisjoint(node_b.held_partitions)
        user = "U7"
        holder = node_a if partition_of(user, PARTITIONS) in node_a.held_partitions else node_b
        await node_b.put(message(user, 1))
        await until(lambda: holder.pending_count(user) == 1)
        other = node_b if holder is node_a else node_a
        assert other.pending_count(user) == 0


@asynccontextmanager
async def running_jobs(
    shared: SharedRedis, metrics: Metrics | None = None
) -> AsyncIterator[tuple[RedisJobs, trio.CancelScope]]:
    jobs = RedisJobs(shared, lease_seconds=LEASE, metrics=metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(jobs.run)
        yield jobs, nursery.cancel_scope
        nursery.cancel_scope.cancel()


async def next_jobs(jobs: RedisJobs, count: int) -> list[JobEntry]:
    with trio.fail_after(WAIT):
        return [await jobs.next_job() for _ in range(count)]


async def test_jobs_are_handed_out_by_priority_class(streams_redis: SharedRedisConfig) -> None:
    async with open_shared_redis(streams_redis) as shared:
        producer = RedisJobs(shared, lease_seconds=LEASE)
        # Put before any node reads: the classes are then seen together.
        for job_id, priority in (("bulk", 3), ("read", 1), ("topup", 0), ("read2", 1)):
            await producer.put(job_id, "U1", job_id.encode(), T0, priority)
        with pytest.raises(DuplicateMessageId):
            await producer.put("read", "U1", b"again", T0, 1)
        assert await producer.contains("bulk")
        async with running_jobs(shared) as (node, _):
            got = await next_jobs(node, 4)
            assert [j.job_id for j in got] == ["topup", "read", "read2", "bulk"]
            assert got[0].body == b"topup" and not got[0].repeated
            for job in got:
                await node.done(job.job_id)
            assert not await node.contains("bulk")
            await until(lambda: node.pending_count() == 0)


async def test_jobs_of_a_silent_node_run_on_a_live_one(streams_redis: SharedRedisConfig) -> None:
    metrics = Metrics()
    async with open_shared_redis(streams_redis) as shared:
        async with running_jobs(shared) as (node_a, stop_a):
            for n in range(3):
                await node_a.put(f"J{n}", "U1", b"x", T0, 1)
            taken = await next_jobs(node_a, 3)
            await node_a.done(taken[0].job_id)
            stop_a.cancel()  # J1 and J2 were taken and not done
        async with running_jobs(shared, metrics) as (node_b, _):
            again = await next_jobs(node_b, 2)
            assert sorted(j.job_id for j in again) == ["J1", "J2"]
            assert all(j.repeated for j in again)
            assert redeliveries(metrics, "jobs") == 2


async def test_a_live_node_keeps_its_slow_jobs(streams_redis: SharedRedisConfig) -> None:
    """A job that takes longer than the lease is renewed, not taken over."""
    async with (
        open_shared_redis(streams_redis) as shared,
        running_jobs(shared) as (node_a, _),
        running_jobs(shared) as (node_b, _),
    ):
        await node_a.put("slow", "U1", b"x", T0, 1)
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as race:
                first: list[JobEntry] = []

                async def take(jobs: RedisJobs) -> None:
                    first.append(await jobs.next_job())
                    race.cancel_scope.cancel()

                race.start_soon(take, node_a)
                race.start_soon(take, node_b)
        await trio.sleep(LEASE * 4)  # several leases: a takeover would have happened
        for node in (node_a, node_b):
            with trio.move_on_after(0.1):
                stolen = await node.next_job()
                pytest.fail(f"job {stolen.job_id} handed out twice")


async def test_writes_during_an_outage_fail_clearly(redis_server: RedisProcess) -> None:
    async with shared_redis(redis_server) as shared:
        outbox = RedisOutbox(shared, partitions=PARTITIONS, lease_seconds=LEASE)
        jobs = RedisJobs(shared, lease_seconds=LEASE)
        redis_server.kill9()
        with pytest.raises(OutboxStoreError):
            await outbox.put(message("U1", 1))
        with pytest.raises(OutboxStoreError):
            await jobs.put("J", "U1", b"x", T0, 0)
        redis_server.start()
        await outbox.put(message("U1", 1))
        await jobs.put("J", "U1", b"x", T0, 0)


def state_on(config: Config, backend: str, url: str) -> Config:
    state = StateConfig(backend=backend, redis=SharedRedisConfig(url=url))  # type: ignore[arg-type]
    return msgspec.structs.replace(config, state=state)


async def test_the_embedded_default_needs_no_redis(tmp_path: Path, shared_dir: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_ports()}/0"  # nothing listens: never dialled
    config = state_on(default_config(tmp_path), "sqlite", nowhere)
    async with running_gateway(config, [tmp_path / "pki"]) as gw:
        answer = await gw.send((shared_dir / ECS17B).read_bytes())
        assert response_code(answer.content) == "I99"
    assert (tmp_path / "jobs.sqlite").exists() and (tmp_path / "outbox.sqlite").exists()


async def test_redis_backend_without_redis_refuses_to_start(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_ports()}/0"
    config = state_on(default_config(tmp_path), "redis", nowhere)
    refused: list[str] = []
    try:
        async with running_gateway(config, [tmp_path / "pki"]):
            pytest.fail("the gateway started without its Redis")
    except* StartupError as group:  # trio's nurseries wrap it
        refused = [str(leaf) for leaf in leaves(group)]
    assert any("not reachable" in reason for reason in refused), refused


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


async def test_a_gateway_on_redis_acknowledges_and_delivers(
    tmp_path: Path, shared_dir: Path, redis_server: RedisProcess
) -> None:
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = state_on(config_with_receiver(tmp_path, port), "redis", redis_server.url)
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            answer = await gw.send((shared_dir / ECS17B).read_bytes())
            assert response_code(answer.content) == "I99"
            await until(lambda: len(receiver.accepted) == 1)
            assert receiver.accepted[0].message_id.endswith(":response")
            assert receiver.accepted[0].sequence == 1
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "jobs.sqlite").exists()  # nothing of it on the request path's disk


async def test_consumers_of_past_processes_are_forgotten_not_their_entries(
    redis_server: RedisProcess,
) -> None:
    async with shared_redis(redis_server) as shared:
        client, stream = shared.client, "t:s"
        await ensure_group(client, stream, "g")
        await client.xadd(stream, {"k": "v"})
        await client.xreadgroup("g", "holder", {stream: ">"}, count=1)  # one pending
        await client.xreadgroup("g", "empty", {stream: ">"}, count=1)  # none left
        await forget_gone_consumers(client, stream, "g", "me", idle_ms=0)
        names = {c[b"name"] for c in await client.xinfo_consumers(stream, "g")}
        assert names == {b"holder"}


async def test_put_refuses_at_once_while_the_journal_is_full(redis_server: RedisProcess) -> None:
    async with shared_redis(redis_server) as shared, trio.open_nursery() as nursery:
        jobs = RedisJobs(shared, lease_seconds=LEASE, max_pending=2)
        await nursery.start(jobs.run)
        for job_id in ("A", "B"):
            await jobs.put(job_id, "U1", b"x", T0, 1)
        await until(lambda: jobs.pending_count() == 2)
        with trio.fail_after(5), pytest.raises(JobsFull, match="limit 2"):
            await jobs.put("C", "U1", b"x", T0, 1)  # refused, not kept waiting
        assert not await jobs.contains("C")  # nothing journaled
        await jobs.done((await jobs.next_job()).job_id)
        await until(lambda: jobs.pending_count() < 2)  # the next refresh sees room
        await jobs.put("C", "U1", b"x", T0, 1)
        assert await jobs.contains("C")
        nursery.cancel_scope.cancel()
