"""Many callers, one Redis round trip: the requests waiting at the same moment share it.

`RoundTripBatcher.submit(item)` queues the item and waits for its outcome. One task
(`run`, started by the store that owns the batcher) takes the first item queued, yields
once to the event loop so every task ready in the same tick can queue too, takes what
is queued (up to `max_batch`) and hands the batch to `send`: one script call, or one per
Redis Cluster slot, sent together. While that round trip is in flight the next batch
queues up, so under load each request pays a share of one round trip, not one each.

Outcomes follow the batch: if `send` raises, every item of the batch gets that error
(nothing of it was acknowledged; the script is atomic per call, so a batch that failed
after Redis ran it may have spent its counters: safe, since a spent counter is refused,
never accepted twice). A caller cancelled while waiting leaves its item in the batch.
The queue is bounded (`queue_size`): beyond it callers wait.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

T = TypeVar("T")
R = TypeVar("R")


class _Waiter(Generic[R]):
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: R | None = None
        self.error: BaseException | None = None


class RoundTripBatcher(Generic[T, R]):
    def __init__(
        self,
        send: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int,
        queue_size: int,
        closed_error: Callable[[], BaseException],
    ) -> None:
        assert max_batch > 0 and queue_size > 0 and not math.isinf(queue_size)
        self._send = send
        self._max_batch = max_batch
        self._closed_error = closed_error
        self._in, self._out = trio.open_memory_channel[tuple[T, _Waiter[R]]](queue_size)
        self.round_trips = 0  # batches sent since start (requests / round_trips = batching)
        self.in_flight = 0  # items in the round trip running now (a gauge)

    @property
    def queued(self) -> int:
        return self._out.statistics().current_buffer_used

    async def submit(self, item: T) -> R:
        waiter: _Waiter[R] = _Waiter()
        try:
            await self._in.send((item, waiter))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise self._closed_error() from None
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.value  # type: ignore[return-value]  # set together with done

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send batches until cancelled; then fail whatever is still queued."""
        task_status.started()
        try:
            async for first in self._out:
                batch = [first]
                await trio.lowlevel.checkpoint()  # one loop tick: the others queue too
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._out.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._send_batch(batch)
        finally:
            self._in.close()
            while True:
                try:
                    _, waiter = self._out.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                waiter.error = self._closed_error()
                waiter.done.set()

    async def _send_batch(self, batch: list[tuple[T, _Waiter[R]]]) -> None:
        self.in_flight = len(batch)
        try:
            results = await self._send([item for item, _ in batch])
        except Exception as exc:
            for _, waiter in batch:
                waiter.error = exc
                waiter.done.set()
            return
        except BaseException:
            for _, waiter in batch:  # cancelled mid-flight (shutdown): not acknowledged
                waiter.error = self._closed_error()
                waiter.done.set()
            raise
        finally:
            self.in_flight = 0
            self.round_trips += 1
        for (_, waiter), result in zip(batch, results, strict=True):
            waiter.value = result
            waiter.done.set()
