"""gateway/stores/writer_thread.py: a store's blocking calls on one thread, in order,
with trio.to_thread's cancellation semantics."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from gateway.stores import writer_thread
from gateway.stores.writer_thread import WriterThread


async def test_calls_run_in_order_on_one_thread_and_return_or_raise() -> None:
    writer = WriterThread("test-writer")
    seen: list[tuple[int, int]] = []
    results: dict[int, int] = {}

    def call(n: int) -> int:
        seen.append((n, threading.get_ident()))
        if n == 7:
            raise ValueError("seven")
        return n * n

    async def caller(n: int) -> None:
        try:
            results[n] = await writer.run_sync(lambda: call(n))
        except ValueError:
            results[n] = -1

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(caller, n)
            await trio.lowlevel.checkpoint()  # queued in this order
    assert [n for n, _ in seen] == list(range(20))
    assert len({ident for _, ident in seen}) == 1 != threading.get_ident()
    assert results == {n: (-1 if n == 7 else n * n) for n in range(20)}
    assert writer.threads_started == 1


async def test_a_caller_cancelled_before_queueing_runs_nothing() -> None:
    writer = WriterThread("test-writer")
    ran = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await writer.run_sync(lambda: ran.append(1))
    assert scope.cancelled_caught and ran == []


async def test_a_queued_call_runs_to_the_end_and_its_caller_gets_the_value() -> None:
    writer = WriterThread("test-writer")
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        finished.set()
        return "done"

    with trio.move_on_after(0.02) as scope:
        got = await writer.run_sync(slow)
    assert finished.is_set() and got == "done"  # not abandoned by the cancellation
    assert scope.cancel_called


async def test_the_thread_ends_when_idle_or_closed_and_a_later_call_starts_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writer_thread, "IDLE_SECONDS", 0.05)
    writer = WriterThread("test-idle-end")
    assert await writer.run_sync(lambda: 1) == 1
    await trio.sleep(0.3)  # idle past IDLE_SECONDS
    assert await writer.run_sync(lambda: 2) == 2
    assert writer.threads_started == 2
    writer.close()
    assert await writer.run_sync(lambda: 3) == 3  # queued right behind the close
    writer.close()
    await trio.sleep(0.1)
    assert writer.threads_started in (2, 3)
    assert not any(t.name == "test-idle-end" and t.is_alive() for t in threading.enumerate())


def test_one_writer_serves_successive_trio_runs() -> None:
    """Each call is answered through the trio run that made it (its own token)."""
    writer = WriterThread("test-writer")
    assert trio.run(writer.run_sync, lambda: "first run") == "first run"
    assert trio.run(writer.run_sync, lambda: "second run") == "second run"
    assert writer.threads_started == 1
