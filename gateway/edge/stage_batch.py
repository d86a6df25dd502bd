"""One synchronous stage run for every request that reaches it in a scheduler round.

The event loop runs each connection's task from its socket to its answer, so without
this every request's checks, replay decision, signed answer and socket write interleave
with every other connection's, and each finishes on its own. `StageBatch.run(fn,
*args)` queues the call. The first caller of a round becomes the leader: it yields
once, so that every task made runnable in the same round reaches the stage too, then
runs all the queued calls in order and wakes their callers, each with its own value or
exception. The pipeline runs the request checks through one (gateway/edge/pipeline.py)
and dispatch a CV 8 answer's signing (gateway/edge/dispatch.py).

Measured (README, Performance): one worker answers more per CPU-second, though the
checks' own CPU, timed in place, hardly moved. What fell is the socket work around them
(receive and send: 18% of the loop's py-spy samples before, 9% after), most likely
because the requests of a round now reach their answers together, and the peers are
woken once for several. A lone request pays one extra pass of the scheduler.

The calls must be synchronous and must not touch the caller's task (no trio calls):
they run in the leader's task. A caller cancelled before its call ran raises Cancelled
and its call never runs; once it ran, the caller gets its result and the cancellation
at its next checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")


class _Call:
    __slots__ = ("abandoned", "args", "fn", "result", "task")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.task = trio.lowlevel.current_task()
        self.result: outcome.Outcome[Any] | None = None
        self.abandoned = False  # its caller was cancelled before it ran: skipped


class StageBatch:
    """Calls queued in one round run together, in order, in the first caller's task."""

    def __init__(self) -> None:
        self._queue: list[_Call] = []
        self._leading = False
        self.batches = 0  # for tests and benchmarks: how many rounds ran a batch
        self.calls = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled already: nothing runs
        call = _Call(fn, args)
        self._queue.append(call)
        if self._leading:
            # The leader wakes us once our call ran (it always runs its batch: its one
            # yield is shielded). A cancel before then takes our call out of the batch.
            def abandon(_: Any) -> trio.lowlevel.Abort:
                call.abandoned = True
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abandon)
        else:
            self._leading = True
            # Everything runnable now runs before us: their calls join this batch.
            await trio.lowlevel.cancel_shielded_checkpoint()
            batch, self._queue = self._queue, []
            self._leading = False
            self._run_batch(batch)
        assert call.result is not None  # set before any caller resumes
        value: T = call.result.unwrap()
        return value

    def _run_batch(self, batch: list[_Call]) -> None:
        self.batches += 1
        leader = trio.lowlevel.current_task()
        for call in batch:
            if call.abandoned:
                continue
            self.calls += 1
            call.result = outcome.capture(call.fn, *call.args)
            if call.task is not leader:
                trio.lowlevel.reschedule(call.task)
