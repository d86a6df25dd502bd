"""The techspec store, on SQLite and on Redis: audited table revisions and Install and
Leave cases (`open_store`: each behaviour test on both backends)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from bench.redis_process import RedisProcess
from gateway.core.config import SharedRedisConfig
from gateway.core.techspec.coverage import UprnKey
from gateway.core.techspec.install_leave import (
    AlertSent,
    Closed,
    CoverageArrived,
    InstallLeavePolicy,
    Notified,
    apply,
)
from gateway.core.techspec.tables import decode_tables
from gateway.stores.redis_shared import open_shared_redis
from gateway.stores.techspec_redis import open_redis_techspec_store
from gateway.stores.techspec_sqlite import FILE_NAME, open_techspec_store
from gateway.stores.techspec_store import (
    KEEP_DOCUMENTS,
    StaleCase,
    TechspecStore,
    document_digest,
)
from tests.techspec_data import CONSULTATION, EXTENDED

AT = dt.datetime(2018, 3, 1, 10, 0, tzinfo=dt.UTC)
POLICY = InstallLeavePolicy()

Opener = Callable[[], AbstractAsyncContextManager[TechspecStore]]


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the store; opening again is a restart (or, on Redis, another node)."""
    if request.param == "sqlite":
        return lambda: open_techspec_store(tmp_path / FILE_NAME)
    server: RedisProcess = request.getfixturevalue("redis_server")

    @asynccontextmanager
    async def on_redis() -> AsyncIterator[TechspecStore]:
        settings = SharedRedisConfig(url=server.url, key_prefix="techspec-test")
        async with (
            open_shared_redis(settings) as shared,
            open_redis_techspec_store(shared) as store,
        ):
            yield store

    return on_redis


async def test_table_revisions_are_kept_audited_and_survive_a_restart(open_store: Opener) -> None:
    async with open_store() as store:
        assert await store.current("techspec") is None
        first = await store.replace(
            "techspec",
            CONSULTATION,
            "toml",
            actor="ops",
            reason="SEC A3 as consulted",
            summary="3 versions",
            at=AT,
        )
        second = await store.replace(
            "techspec",
            EXTENDED,
            "toml",
            actor="ops",
            reason="MP999",
            summary="6 versions",
            at=AT + dt.timedelta(days=1),
        )
        await store.replace(
            "coverage", b"premises = []", "toml", actor="cli", reason="", summary="0", at=AT
        )
        assert (first.revision, second.revision) == (1, 2)
    async with open_store() as store:  # a restart
        current = await store.current("techspec")
        assert current is not None and current.revision == 2 and current.document == EXTENDED
        decode_tables(current.document, fmt=current.format)  # what the edge does at start
        audit = await store.audit("techspec")
        assert [(r.revision, r.reason, r.actor) for r in audit] == [
            (2, "MP999", "ops"),
            (1, "SEC A3 as consulted", "ops"),
        ]
        assert audit[1].sha256 == document_digest(CONSULTATION)
        assert audit[1].size_bytes == len(CONSULTATION) and audit[1].document == b""
        assert audit[0].loaded_at == AT + dt.timedelta(days=1)
        coverage = await store.current("coverage")
        assert coverage is not None and coverage.revision == 1


async def test_old_documents_are_dropped_but_their_audit_rows_stay(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    async with open_techspec_store(path, synchronous="NORMAL") as store:
        for n in range(KEEP_DOCUMENTS + 2):
            await store.replace(
                "coverage", f"# {n}".encode(), "toml", actor="ops", reason="", summary="", at=AT
            )
        assert len(await store.audit("coverage")) == KEEP_DOCUMENTS + 2
    with sqlite3.connect(path) as conn:
        kept = conn.execute(
            "SELECT revision FROM table_revision WHERE kind = 'coverage' AND length(document) > 0"
        ).fetchall()
    assert [r for (r,) in kept] == list(range(3, KEEP_DOCUMENTS + 3))


async def test_a_revision_the_audit_cannot_hold_is_refused(open_store: Opener) -> None:
    async with open_store() as store:
        with pytest.raises(ValueError, match="actor"):
            await store.replace(
                "techspec", CONSULTATION, "toml", actor=" ", reason="", summary="", at=AT
            )
        with pytest.raises(ValueError, match="reason"):
            await store.replace(
                "techspec", CONSULTATION, "toml", actor="ops", reason="x" * 201, summary="", at=AT
            )
        assert await store.current("techspec") is None


def notified(hub: str) -> Notified:
    return Notified(
        user_id="90-B3-D5-1F-30-01-00-00",
        hub_id=hub,
        mpxn="1",
        premises=UprnKey(5),
        kind="reactive",
        at=AT,
    )


async def test_cases_move_on_with_compare_and_set_and_keep_their_history(
    open_store: Opener,
) -> None:
    hub = "00-DB-12-34-56-78-90-A2"
    async with open_store() as store:
        opened = apply(None, notified(hub), POLICY).case
        await store.save(None, opened, at=AT)
        with pytest.raises(StaleCase):  # another node opened it meanwhile
            await store.save(None, opened, at=AT)
        arrived = apply(opened, CoverageArrived(at=AT + dt.timedelta(days=3)), POLICY).case
        await store.save(opened, arrived, at=AT + dt.timedelta(days=3))
        with pytest.raises(StaleCase):  # moving on from a state that is no longer stored
            await store.save(opened, arrived, at=AT)
        other = apply(None, notified("00-DB-12-34-56-78-90-B2"), POLICY).case
        await store.save(None, other, at=AT)
        assert [c.hub_id for c in await store.open_cases()] == [hub, other.hub_id]
    async with open_store() as store:
        stored = await store.get(hub)
        assert stored == arrived and stored.premises == UprnKey(5)
        sent = apply(stored, AlertSent(at=AT + dt.timedelta(days=3)), POLICY).case
        await store.save(stored, sent, at=AT + dt.timedelta(days=3))
        closed = apply(
            sent, Closed(reason="commissioned", at=AT + dt.timedelta(days=5)), POLICY
        ).case
        await store.save(sent, closed, at=AT + dt.timedelta(days=5))
        assert [c.hub_id for c in await store.open_cases()] == [other.hub_id]
        history = await store.history(hub)
        assert [e.case.state for e in history] == [
            "awaiting_wan",
            "wan_available",
            "wan_available",
            "closed",
        ]
        assert history[-1].at == AT + dt.timedelta(days=5)
        assert await store.get("00-DB-00-00-00-00-00-00") is None
