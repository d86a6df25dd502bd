"""One long-lived thread per store connection, running its blocking calls in order.

Why not `trio.to_thread.run_sync` per call: it hands each call to a cached thread,
takes a CapacityLimiter and names the OS thread for the call (two prctl calls): 61-68
µs of CPU per call on one core against 30-31 µs here (`python -m bench.bench_thread_hop`,
two runs). A store's group commit makes one call per batch, and at a moderate rate a
batch holds one or two requests, so that was a share of each acknowledgement's CPU.
The connection is used by one call at a time anyway: one thread, fed in order, is all
it needs, and the order also serialises the calls without a limiter.

Semantics are to_thread's (without `abandon_on_cancel`): a caller cancelled before its
call was queued raises Cancelled and the call never runs; once queued, the call runs
to the end and the caller gets its value or exception, its cancellation coming at its
next checkpoint. The thread ends after IDLE_SECONDS without work (the next call starts
another) and when `close` is called; a call queued meanwhile is still run.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Final, TypeVar

import outcome
import trio

T = TypeVar("T")

IDLE_SECONDS: Final = 10.0

_Job = tuple[Callable[[], object], trio.lowlevel.Task, trio.lowlevel.TrioToken]
_STOP: Final = None


class WriterThread:
    """`await writer.run_sync(fn)`: fn() in this writer's thread, after the calls before it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the thread's coming and going against a put
        self._thread: threading.Thread | None = None
        self.threads_started = 0  # for tests: a thread per idle period, not per call

    async def run_sync(self, fn: Callable[[], T]) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        job = (fn, trio.lowlevel.current_task(), trio.lowlevel.current_trio_token())
        with self._lock:
            self._jobs.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self.threads_started += 1
                self._thread.start()
        # Queued: it runs whatever happens to the caller, which waits for it (as
        # to_thread does once its thread has the call).
        result: T = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return result

    def close(self) -> None:
        """The thread ends once what is queued has run (a later call starts another)."""
        self._jobs.put(_STOP)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                job = _STOP
            if job is _STOP:
                with self._lock:  # a put holds the lock: none can slip in unseen
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            fn, task, token = job
            result = outcome.capture(fn)
            with contextlib.suppress(trio.RunFinishedError):  # its run is over: none waits
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)
