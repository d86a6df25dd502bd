"""Group commit for a SQLite journal: many callers, one transaction (one fsync) per batch.

One writer task owns the only connection and uses it from one worker thread at
a time. It takes every operation already queued (up to `max_batch`), runs them
in one transaction in that thread, commits once, then wakes each caller with
its own outcome. Each operation runs in a savepoint, so one that fails spares
the rest of its batch. The queue is bounded: beyond `queue_size` callers wait
(backpressure, never unbounded memory).

Outcomes are exact under cancellation: a batch that reached its thread runs to
the end (committed or rolled back) before the writer returns; an operation
that never reached a transaction fails with the store's error, so no caller is
ever told "stored" for something that is not on disk. The outbox and the
quarantine store are built on this.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")


class Op(Generic[T]):
    """One unit of work: `fn` in the writer's thread; `after` on trio once it committed."""

    __slots__ = ("after", "done", "error", "fn", "ran", "value")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], T], after: Callable[[T], None] | None
    ) -> None:
        self.fn = fn
        self.after = after
        self.value: T | None = None
        self.error: BaseException | None = None
        self.ran = False  # set once the op's outcome is final (committed or not)
        self.done = trio.Event()


class GroupCommitWriter:
    """The writer loop and the callers' side; the store supplies the connection."""

    def __init__(
        self,
        *,
        error_type: type[Exception],
        what: str,
        max_batch: int,
        queue_size: int,
    ) -> None:
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        self._error_type = error_type
        self._what = what
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[Op[Any]](queue_size)
        self._limiter = trio.CapacityLimiter(1)
        self.running = False
        self.transactions = 0  # batches committed or rolled back

    @property
    def queue_depth(self) -> int:
        return self._send.statistics().current_buffer_used

    async def run(
        self,
        conn: sqlite3.Connection,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Apply queued operations in batches until cancelled; then fail what is left."""
        batch: list[Op[Any]] = []
        try:
            self.running = True
            task_status.started()
            while True:
                batch = [await self._receive.receive()]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                # Not abandoned on cancel: the transaction finishes (committed or rolled
                # back) before we return, so the file and each op's outcome agree.
                await trio.to_thread.run_sync(self._apply, conn, batch, limiter=self._limiter)
                self.transactions += 1
                self._finish(batch)
                batch = []
        finally:
            self.running = False
            self._finish(batch)
            # Closing wakes callers blocked on a full queue, so none can slip an op in
            # after the drain and wait for ever.
            self._send.close()
            self._fail_queued()

    async def submit(
        self, fn: Callable[[sqlite3.Connection], T], after: Callable[[T], None] | None = None
    ) -> T:
        """Queue `fn`; return its value once the transaction carrying it committed."""
        if not self.running:
            raise self._error_type(f"{self._what} writer is not running")
        op = Op(fn, after)
        try:
            await self._send.send(op)
        except trio.ClosedResourceError:
            raise self._error_type(f"{self._what} writer stopped") from None
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.value  # type: ignore[return-value]  # set whenever error is None

    def _apply(self, conn: sqlite3.Connection, batch: list[Op[Any]]) -> None:
        """One transaction for the batch; each op in a savepoint."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    op.value = op.fn(conn)
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO op")
                    op.error = self._error_type(f"{self._what} database: {exc}")
                    op.error.__cause__ = exc
                except Exception as exc:  # the caller's refusal, handed to that caller
                    conn.execute("ROLLBACK TO op")
                    op.error = exc
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for op in batch:
                op.value = None
                op.error = self._error_type(f"{self._what} database: {exc}")
        for op in batch:
            op.ran = True

    def _finish(self, batch: list[Op[Any]]) -> None:
        # `after` runs before any caller resumes, so a caller never sees in-memory
        # state older than its own write. A cancel may land before the thread started:
        # such an op never ran and must not look stored.
        for op in batch:
            if op.done.is_set():
                continue
            op.done.set()
            if not op.ran:
                op.error = self._error_type(f"{self._what} writer stopped before this operation")
            elif op.error is None and op.after is not None:
                op.after(op.value)

    def _fail_queued(self) -> None:
        while True:
            try:
                op = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            op.error = self._error_type(f"{self._what} writer stopped")
            op.done.set()
