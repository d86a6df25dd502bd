"""The shared Redis connection: key layout, the persistence check, WAIT on acknowledgement."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from bench.ports import free_ports
from bench.redis_process import RedisProcess
from gateway.core.config import SharedRedisConfig, StateConfig
from gateway.stores.redis_shared import (
    Keys,
    RedisDurabilityError,
    SharedStoreUnavailable,
    open_shared_redis,
)


def test_keys_carry_a_cluster_hash_tag() -> None:
    keys = Keys("gw")
    assert (
        keys.of("replay", "90-B3-D5-1F-30-01-00-00", "n") == "gw:replay:{90-B3-D5-1F-30-01-00-00}:n"
    )
    assert keys.of("quarantine", None, "seq") == "gw:quarantine:seq"


def test_config_refuses_incomplete_deployments() -> None:
    with pytest.raises(msgspec.ValidationError, match="sentinels"):
        msgspec.convert({"redis": {"mode": "sentinel"}}, StateConfig)
    with pytest.raises(msgspec.ValidationError, match="cluster_nodes"):
        msgspec.convert({"redis": {"mode": "cluster"}}, StateConfig)
    with pytest.raises(msgspec.ValidationError, match="wait_replicas"):
        msgspec.convert({"redis": {"durability": "everysec"}}, StateConfig)
    # A WAIT longer than the client's read timeout would end as a client timeout.
    everysec = {"durability": "everysec", "wait_replicas": 1, "wait_timeout_ms": 2000}
    with pytest.raises(msgspec.ValidationError, match="below stream_timeout_seconds"):
        msgspec.convert({"redis": everysec}, StateConfig)
    reads = {**everysec, "stream_timeout_seconds": 3}
    assert msgspec.convert({"redis": reads}, StateConfig).redis.wait_timeout_ms == 2000
    assert StateConfig().backend == "sqlite"  # the embedded default needs no Redis


async def test_a_server_with_fsync_always_is_accepted(redis_server: RedisProcess) -> None:
    settings = SharedRedisConfig(url=redis_server.url)
    async with open_shared_redis(settings) as shared:
        key = shared.keys.of("t", "x")
        assert await shared.durable(shared.client.set(key, b"1"))
        assert await shared.client.get(key) == b"1"


async def test_a_server_without_fsync_always_is_refused(redis_server: RedisProcess) -> None:
    settings = SharedRedisConfig(url=redis_server.url)
    async with open_shared_redis(settings) as shared:
        await shared.client.config_set({"appendfsync": "everysec"})
    with pytest.raises(RedisDurabilityError, match="appendfsync always"):
        async with open_shared_redis(settings):
            pass
    async with open_shared_redis(SharedRedisConfig(url=redis_server.url, durability="unchecked")):
        pass


async def test_wait_for_a_replica_that_is_not_there_is_not_acknowledged(
    redis_server: RedisProcess,
) -> None:
    settings = SharedRedisConfig(
        url=redis_server.url, durability="everysec", wait_replicas=1, wait_timeout_ms=50
    )
    async with open_shared_redis(settings) as shared:
        with pytest.raises(SharedStoreUnavailable, match="0 of 1 replicas"):
            await shared.durable(shared.client.set(shared.keys.of("t", "y"), b"1"))


async def test_a_replica_confirms_the_write(redis_server: RedisProcess, tmp_path: Path) -> None:
    replica = RedisProcess(
        tmp_path / "replica", extra=("--replicaof", "127.0.0.1", str(redis_server.port))
    )
    async with open_shared_redis(SharedRedisConfig(url=redis_server.url)) as shared:
        await shared.client.config_set({"repl-diskless-sync-delay": "0"})  # sync at once
    replica.start()
    try:
        settings = SharedRedisConfig(
            url=redis_server.url,
            durability="everysec",
            wait_replicas=1,
            wait_timeout_ms=5000,
            stream_timeout_seconds=6,
        )
        async with open_shared_redis(settings) as shared:
            await shared.durable(shared.client.set(shared.keys.of("t", "z"), b"1"))
    finally:
        replica.stop()


async def test_an_unreachable_server_is_said_plainly() -> None:
    settings = SharedRedisConfig(
        url=f"redis://127.0.0.1:{free_ports()}/0", connect_timeout_seconds=0.5
    )
    with pytest.raises(SharedStoreUnavailable, match="not reachable"):
        async with open_shared_redis(settings):
            pass
