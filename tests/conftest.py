from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from lxml import etree

from bench.browser import BrowserThread, browser_unavailable
from bench.redis_process import (
    REDIS_CLI,
    REDIS_SERVER,
    RedisClusterProcesses,
    RedisProcess,
    RedisSentinelProcesses,
)
from gateway.core.clock import FixedClock
from gateway.core.config import SharedRedisConfig
from gateway.stores.quarantine import QuarantineStore, open_quarantine_store
from gateway.stores.quarantine_redis import open_redis_quarantine_store
from gateway.stores.redis_shared import open_shared_redis

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"


def needs(missing: str | None) -> None:
    """Skip when something a test needs is missing; under CI (set by .ci/run) fail
    instead: there, every test must run."""
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{missing} and CI is set: these tests must run in CI")
    pytest.skip(f"{missing} (with CI set this fails instead)")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The DCC's public test data beside the project (never copied into it)."""
    if not (SHARED / "SPEC.md").exists():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def redis_reachable() -> bool:
    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def redis_available() -> None:
    """Skip without Redis; fail instead when CI is set, so CI cannot pass by skipping."""
    needs(None if redis_reachable() else f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A test-owned redis-server (AOF on, its own port and directory), stopped after the
    test; skip without the redis-server binary, fail instead when CI is set."""
    needs("redis-server is not installed" if REDIS_SERVER is None else None)
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


QuarantineOpener = Callable[[FixedClock], AbstractAsyncContextManager[QuarantineStore]]


@pytest.fixture(params=["sqlite", "redis"])
def quarantine_opener(request: pytest.FixtureRequest, tmp_path: Path) -> QuarantineOpener:
    """Opens the store on one backend; opening again is a restarted process (or, on
    Redis, another node) over the same state."""
    if request.param == "sqlite":
        return lambda clock: open_quarantine_store(tmp_path / "q.sqlite", clock)
    server: RedisProcess = request.getfixturevalue("redis_server")

    @asynccontextmanager
    async def on_redis(clock: FixedClock) -> AsyncIterator[QuarantineStore]:
        settings = SharedRedisConfig(url=server.url, key_prefix="q-test")
        async with (
            open_shared_redis(settings) as shared,
            open_redis_quarantine_store(shared, clock) as store,
        ):
            yield store

    return on_redis


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterProcesses]:
    """A test-owned three-primary Redis Cluster (AOF on), stopped after the test; skip
    without redis-server or redis-cli, fail instead when CI is set."""
    needs(
        "redis-server or redis-cli is not installed"
        if REDIS_SERVER is None or REDIS_CLI is None
        else None
    )
    cluster = RedisClusterProcesses(tmp_path / "redis-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


MMC_VERSIONS = ("5.0", "5.1", "5.3", "5.4")


@pytest.fixture(scope="session")
def mmc_schemas(shared_dir: Path) -> dict[str, etree.XMLSchema]:
    """Every served version's MMC schema, parsed once per session (they are large)."""
    xsd = shared_dir / "duis/xsd"
    return {
        version: etree.XMLSchema(etree.parse(str(xsd / f"MMC_Schema_V{version}.xsd")))
        for version in MMC_VERSIONS
    }


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    """One headless Chromium for the session; skip without it, fail instead when CI is set."""
    needs(browser_unavailable())
    thread = BrowserThread()
    thread.start()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[RedisSentinelProcesses]:
    """A test-owned primary, replica and Sentinel (AOF on, fsync always), stopped after
    the test; skip without redis-server, fail instead when CI is set."""
    needs("redis-server is not installed" if REDIS_SERVER is None else None)
    deployment = RedisSentinelProcesses(tmp_path / "redis-sentinel")
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
