"""The durable outbox on its own: storage, ordering, admin views, crash consistency."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from gateway.core.clock import FixedClock
from gateway.edge.metrics import Metrics
from gateway.stores.outbox import (
    DuplicateMessageId,
    NotDeadLettered,
    OutboundMessage,
    Outbox,
    OutboxError,
    UnknownMessage,
    open_outbox,
)
from gateway.stores.outbox_sqlite import OutboxStoreError

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def message(user: str, n: int, **changes: object) -> OutboundMessage:
    fields: dict[str, object] = {
        "message_id": f"{user}-{n}",
        "user_id": user,
        "url": f"http://127.0.0.1:9/{user}",
        "body": f"<sr:Response>{user} {n}</sr:Response>".encode(),
        "created_at": T0,
    }
    fields.update(changes)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


async def test_put_orders_per_user_and_counts(tmp_path: Path) -> None:
    metrics = Metrics()
    async with open_outbox(tmp_path / "outbox.db", metrics=metrics) as outbox:
        for n in range(3):
            await outbox.put(message("U2", n))
            await outbox.put(message("U1", n, kind="alert"))
        assert outbox.users_with_pending() == ["U2", "U1"]  # longest waiting first
        assert outbox.pending_count() == 6
        assert outbox.pending_count("U1") == 3
        assert metrics.registry.get_sample_value("duisgw_outbox_pending") == 6
        stored = await outbox.pending("U1")
        assert [m.user_seq for m in stored] == [1, 2, 3]
        assert [m.message_id for m in stored] == ["U1-0", "U1-1", "U1-2"]
        assert stored[0].kind == "alert"
        assert stored[0].body == b"<sr:Response>U1 0</sr:Response>"
        assert stored[0].created_at == T0
        first = await outbox.next_pending("U2")
        assert first is not None and first.message_id == "U2-0"
        assert [m.id for m in await outbox.pending(after_id=4, limit=1)] == [5]


async def test_duplicate_message_id_is_refused(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db") as outbox:
        await outbox.put(message("U1", 1))
        with pytest.raises(DuplicateMessageId):
            await outbox.put(message("U1", 1, body=b"<other/>"))
        # The refused put is rolled back alone: the sequence has no gap.
        await outbox.put(message("U1", 2))
        assert [m.user_seq for m in await outbox.pending()] == [1, 2]
        assert outbox.pending_count() == 2


async def test_naive_time_is_refused_before_storing(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db") as outbox:
        with pytest.raises(ValueError):
            await outbox.put(message("U1", 1, created_at=dt.datetime(2026, 1, 5)))
        assert outbox.pending_count() == 0


async def test_delivered_drops_body_and_purges_after_retention(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    async with open_outbox(tmp_path / "outbox.db", clock=clock) as outbox:
        await outbox.put(message("U1", 1))
        await outbox.mark_delivered("U1-1")
        await outbox.mark_delivered("U1-1")  # again: no change, no double count
        assert outbox.pending_count() == 0
        done = await outbox.get("U1-1")
        assert done is not None and done.state == "delivered" and done.body == b""
        assert done.finished_at == T0
        with pytest.raises(DuplicateMessageId):  # still remembered: never sent twice
            await outbox.put(message("U1", 1))
        assert await outbox.purge_delivered(3600) == 0
        clock.advance(3600)
        assert await outbox.purge_delivered(3600) == 1
        assert await outbox.get("U1-1") is None


async def test_dead_letter_retry_and_discard(tmp_path: Path) -> None:
    async with open_outbox(tmp_path / "outbox.db") as outbox:
        await outbox.put(message("U1", 1))
        await outbox.put(message("U1", 2))
        await outbox.record_failure("U1-1", "HTTP 503")
        await outbox.dead_letter("U1-1", "HTTP 400: bad")
        assert outbox.dead_letter_count() == 1 and outbox.pending_count("U1") == 1
        (dead,) = await outbox.dead_letters()
        assert (dead.message_id, dead.attempts, dead.last_error) == ("U1-1", 2, "HTTP 400: bad")
        assert dead.body  # kept for the retry

        with pytest.raises(NotDeadLettered):
            await outbox.retry_dead_letter("U1-2")
        with pytest.raises(UnknownMessage):
            await outbox.retry_dead_letter("nope")

        woken: list[str] = []
        with outbox.watch(woken.append):
            # A second delivery service would send everything twice: refused.
            with pytest.raises(OutboxError), outbox.watch(woken.append):
                pass
            await outbox.retry_dead_letter("U1-1")
        assert woken == ["U1"]
        again = await outbox.next_pending("U1")
        assert again is not None and again.message_id == "U1-1" and again.attempts == 0
        assert outbox.dead_letter_count() == 0 and outbox.pending_count("U1") == 2

        await outbox.dead_letter("U1-1", "HTTP 400")
        await outbox.discard_dead_letter("U1-1")
        assert outbox.dead_letter_count() == 0 and await outbox.get("U1-1") is None
        with pytest.raises(UnknownMessage):
            await outbox.discard_dead_letter("U1-1")


async def test_backpressure_small_queue_loses_nothing(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "outbox.db", queue_size=4, max_batch=8)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(outbox.run)
            async with trio.open_nursery() as putters:
                for user in ("U1", "U2", "U3"):
                    for n in range(50):
                        putters.start_soon(outbox.put, message(user, n))
            assert outbox.pending_count() == 150
            for user in ("U1", "U2", "U3"):
                seqs = [m.user_seq for m in await outbox.pending(user)]
                assert seqs == list(range(1, 51))
            nursery.cancel_scope.cancel()
    finally:
        outbox.close()
    with pytest.raises(OutboxStoreError):  # the writer is gone: refused, never hung
        await outbox.put(message("U1", 99))


async def test_writer_cancelled_mid_stream_every_put_resolves(tmp_path: Path) -> None:
    """Stopping the writer answers every caller (committed, or an error), and what
    the callers were told matches the file exactly."""
    path = tmp_path / "outbox.db"
    outbox = await Outbox.open(path, queue_size=8, max_batch=4)
    stored_ok: set[str] = set()
    refused: set[str] = set()
    writer_scope = trio.CancelScope()
    twenty_stored = trio.Event()

    async def run_writer(*, task_status: trio.TaskStatus[None]) -> None:
        with writer_scope:
            await outbox.run(task_status=task_status)

    async def putter(n: int) -> None:
        try:
            await outbox.put(message("U1", n))
            stored_ok.add(f"U1-{n}")
            if len(stored_ok) >= 20:
                twenty_stored.set()
        except OutboxStoreError:
            refused.add(f"U1-{n}")

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_writer)
            for n in range(200):
                nursery.start_soon(putter, n)
            await twenty_stored.wait()
            writer_scope.cancel()
    finally:
        outbox.close()
    assert len(stored_ok) + len(refused) == 200
    assert len(stored_ok) >= 20 and refused
    async with open_outbox(path) as reopened:
        assert {m.message_id for m in await reopened.pending()} == stored_ok


async def test_reopen_keeps_counts_and_sequences(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path) as outbox:
        for n in range(3):
            await outbox.put(message("U1", n))
        await outbox.mark_delivered("U1-0")
        await outbox.dead_letter("U1-1", "HTTP 400")
    async with open_outbox(path) as outbox:
        assert outbox.pending_count() == 1 and outbox.dead_letter_count() == 1
        await outbox.put(message("U1", 3))
        assert [m.user_seq for m in await outbox.pending("U1")] == [3, 4]


_WRITER = textwrap.dedent(
    """
    import datetime as dt, sys
    from pathlib import Path
    import trio
    from gateway.stores.outbox import OutboundMessage, open_outbox

    async def main(path):
        async with open_outbox(Path(path)) as outbox:
            async def putter(first):
                for n in range(first, 10**6, 8):
                    await outbox.put(OutboundMessage(
                        message_id=f"m{n}", user_id=f"U{n % 3}", url="http://127.0.0.1:9/",
                        body=b"<r/>" * 64, created_at=dt.datetime.now(dt.UTC)))
                    print(f"m{n}", flush=True)  # acknowledged: must survive
            async with trio.open_nursery() as nursery:
                for first in range(8):
                    nursery.start_soon(putter, first)

    trio.run(main, sys.argv[1])
    """
)


def test_acknowledged_puts_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        cwd=PROJECT_ROOT,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged: set[str] = set()
    try:
        for line in writer.stdout:
            acknowledged.add(line.strip())
            if len(acknowledged) >= 400:
                break
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # mid-batch: puts are still arriving
        rest, _ = writer.communicate(timeout=10)
    acknowledged.update(rest.split())
    assert writer.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 400

    conn = sqlite3.connect(path)  # as a restart would: WAL replayed on open
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in conn.execute("SELECT message_id FROM outbox")}
        for (user,) in conn.execute("SELECT DISTINCT user_id FROM outbox"):
            seqs = [
                r[0]
                for r in conn.execute(
                    "SELECT user_seq FROM outbox WHERE user_id = ? ORDER BY user_seq", (user,)
                )
            ]
            assert seqs == list(range(1, len(seqs) + 1))  # no gaps, no torn batch
    finally:
        conn.close()
    assert acknowledged <= stored
