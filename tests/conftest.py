from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from bench.browser import BrowserThread, browser_unavailable
from tests.redis_process import REDIS_SERVER, RedisProcess

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"


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
    if redis_reachable():
        return
    reason = f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} and CI is set: Redis tests must run in CI")
    pytest.skip(f"{reason} (with CI set this fails instead)")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A test-owned redis-server (AOF on, its own port and directory), stopped after the
    test; skip without the redis-server binary, fail instead when CI is set."""
    if REDIS_SERVER is None:
        reason = "redis-server is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} and CI is set: these tests must run in CI")
        pytest.skip(f"{reason} (with CI set this fails instead)")
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
    missing = browser_unavailable()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} and CI is set: the browser tests must run in CI")
        pytest.skip(f"{missing} (with CI set this fails instead)")
    thread = BrowserThread()
    thread.start()
    try:
        yield thread
    finally:
        thread.close()
