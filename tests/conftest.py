from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

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
