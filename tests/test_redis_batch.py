"""The round-trip batcher: callers waiting together share one `send`; a failed send fails
exactly its batch; callers beyond the queue wait; stopping fails what never went out."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from gateway.stores.redis_batch import RoundTripBatcher


class Echo:
    """A `send` that records its batches and can be told to fail or to stall."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_next = False
        self.gate: trio.Event | None = None

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis went away")
        return [item * 10 for item in items]


def closed() -> Exception:
    return trio.ClosedResourceError("closed")


async def test_callers_waiting_together_share_one_send() -> None:
    echo = Echo()
    batcher: RoundTripBatcher[int, int] = RoundTripBatcher(
        echo, max_batch=100, queue_size=100, closed_error=closed
    )
    results: dict[int, int] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)

        async def call(n: int) -> None:
            results[n] = await batcher.submit(n)

        async with trio.open_nursery() as callers:
            for n in range(50):
                callers.start_soon(call, n)
        nursery.cancel_scope.cancel()
    assert results == {n: n * 10 for n in range(50)}  # each its own answer
    assert len(echo.batches) < 5 and batcher.round_trips == len(echo.batches)
    assert max(len(b) for b in echo.batches) > 1


async def test_a_failed_send_fails_its_batch_only() -> None:
    echo = Echo()
    batcher: RoundTripBatcher[int, int] = RoundTripBatcher(
        echo, max_batch=4, queue_size=100, closed_error=closed
    )
    outcomes: dict[int, object] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        echo.fail_next = True

        async def call(n: int) -> None:
            try:
                outcomes[n] = await batcher.submit(n)
            except ConnectionError as exc:
                outcomes[n] = exc

        async with trio.open_nursery() as callers:
            for n in range(8):
                callers.start_soon(call, n)
        nursery.cancel_scope.cancel()
    failed = [n for n, o in outcomes.items() if isinstance(o, ConnectionError)]
    assert sorted(failed) == sorted(echo.batches[0])  # exactly the first batch (max 4)
    assert all(outcomes[n] == n * 10 for n in outcomes if n not in failed)


async def test_stopping_fails_what_is_queued_or_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    echo = Echo()
    echo.gate = trio.Event()  # the first round trip never returns
    batcher: RoundTripBatcher[int, int] = RoundTripBatcher(
        echo, max_batch=1, queue_size=10, closed_error=closed
    )
    errors: list[BaseException] = []

    async def call(n: int) -> None:
        try:
            await batcher.submit(n)
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as outer, trio.open_nursery() as runner:
        await runner.start(batcher.run)
        for n in range(3):
            outer.start_soon(call, n)
        await trio.sleep(1)
        assert batcher.in_flight == 1 and batcher.queued == 2
        runner.cancel_scope.cancel()
    assert len(errors) == 3  # none told "decided" for something never sent or answered
    with pytest.raises(trio.ClosedResourceError):
        await batcher.submit(9)
