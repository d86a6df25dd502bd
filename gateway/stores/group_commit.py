"""Group commit: many callers, one transaction (one fsync) per batch. The one engine.

`GroupCommit` queues each caller's item and has no task of its own: whoever needs a
transaction while none is running becomes the writer. It takes what is queued (up
to `max_batch`), hands the batch to `apply` in the store's one writer thread
(gateway/stores/writer_thread.py: calls on the connection run there in order), then
settles every item before any
caller resumes, so no caller sees in-memory state older than its own write. While a
batch is being written the others wait and then look again, so there is a writer as
long as anyone waits, and nothing is orphaned when callers come and go.

Outcomes are exact under cancellation. A batch whose thread started runs to the end
(committed or rolled back) and every item in it is settled, whichever caller was
cancelled; a batch cancelled before its thread began goes back to the front of the
queue, in order. An item whose caller was cancelled while waiting stays queued and
is applied with a later batch (so it may have been applied: a caller that gave up
cannot know). The queue is bounded (`queue_size`, read at each call): beyond it
callers wait. `stop` fails whatever never reached a transaction with the store's
error, so no caller is ever told "stored" for something that is not on disk.

Two kinds of batch use it:

- `SqlJournal` (below): each item is a function over the connection, run in its own
  savepoint, so one that fails spares the rest of its batch. The outbox and jobs
  journals, the quarantine and the techspec store are built on it.
- the replay guard (gateway/stores/replay.py): the whole batch is one decision over
  the shared counters, committed or refused together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Generic, Protocol, TypeVar

import trio

from gateway.stores.writer_thread import WriterThread

T = TypeVar("T")
R = TypeVar("R")
V = TypeVar("V")

# How long `stop` waits for a batch whose thread is running (it cannot be abandoned:
# it holds the connection). SQLite's busy timeout and the disk bound it; this bounds us.
STOP_WAIT_SECONDS: Final = 60.0


class Settled(Generic[R]):
    """One item's outcome: a value, or the error its caller raises."""

    __slots__ = ("error", "value")

    def __init__(self, value: R | None = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


class _Pending(Generic[T, R]):
    __slots__ = ("item", "outcome")

    def __init__(self, item: T) -> None:
        self.item = item
        self.outcome: Settled[R] | None = None  # set once final


class GroupCommit(Generic[T, R]):
    """`apply(batch)` runs in a thread and returns one `Settled` per item, in order."""

    def __init__(
        self,
        apply: Callable[[list[T]], list[Settled[R]]],
        *,
        stopped_error: Callable[[str], BaseException],
        batch_failed: Callable[[BaseException], BaseException],
        max_batch: int,
        queue_size: Callable[[], int],
        settled: Callable[[T, Settled[R]], None] | None = None,
        name: str = "duisgw-group-commit",
    ) -> None:
        """`stopped_error(why)`: what a caller gets when the engine is not running;
        `batch_failed(exc)`: each caller's own error when `apply` raised (a fresh one
        per caller: many tasks re-raising one object would tangle its traceback);
        `settled(item, outcome)`: runs for each item before any caller resumes."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._apply = apply
        self._stopped_error = stopped_error
        self._batch_failed = batch_failed
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._settled = settled
        self._writer = WriterThread(name)
        self._queue: list[_Pending[T, R]] = []
        self._writing = False
        self._committing = 0
        self._written = trio.Event()
        self.running = False
        self.transactions = 0  # batches `apply` returned from (committed or rolled back)

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch (not those in the batch being written)."""
        return len(self._queue)

    @property
    def committing(self) -> int:
        """Items in the batch being written now."""
        return self._committing

    def start(self) -> None:
        self.running = True

    async def submit(self, item: T) -> R:
        """Queue `item`; its value once the batch carrying it is settled."""
        # A caller cancelled already queues nothing. (One that was the writer when its
        # cancel came finished the batch, got its value, and is cancelled here next.)
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.running:
            raise self._stopped_error("writer is not running")
        while len(self._queue) >= self._queue_size():
            await self._write_or_wait()
            if not self.running:
                raise self._stopped_error("writer stopped")
        pending: _Pending[T, R] = _Pending(item)
        self._queue.append(pending)
        while pending.outcome is None:
            await self._write_or_wait()
        if pending.outcome.error is not None:
            raise pending.outcome.error
        return pending.outcome.value  # type: ignore[return-value]  # set when error is None

    async def run_alone(self, work: Callable[[], V]) -> V:
        """One blocking call on the connection, after any batch running now."""
        return await self._writer.run_sync(work)

    async def flush(self) -> None:
        """Write until nothing is queued (cancelled callers' items too)."""
        while self._writing or self._queue:
            await self._write_or_wait()

    async def stop(self) -> bool:
        """Refuse new items; wait for a batch being written; fail what is queued.

        Returns False if the running batch did not finish within STOP_WAIT_SECONDS:
        its thread still holds the connection, which must then not be closed.
        """
        self.running = False
        written = self._written
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_WAIT_SECONDS):
            while self._writing:
                await written.wait()
                written = self._written
        drained = not self._writing
        queued, self._queue = self._queue, []
        for pending in queued:
            self._settle(pending, Settled(error=self._stopped_error("writer stopped")))
        if not self._writing:  # wake callers waiting for room or for their item
            self._written.set()
            self._written = trio.Event()
        self._writer.close()  # its thread ends after what is queued (run_alone may follow)
        return drained

    async def _write_or_wait(self) -> None:
        # Whoever needs a transaction while none runs becomes the writer.
        if self._writing:
            await self._written.wait()
            return
        if not self._queue or not self.running:
            await trio.lowlevel.checkpoint()
            return
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        self._writing, self._committing, written = True, len(batch), self._written
        started = False
        items = [pending.item for pending in batch]

        def write() -> list[Settled[R]]:
            nonlocal started
            started = True
            return self._apply(items)

        try:
            # Not abandoned on cancel: once the thread runs, the batch completes and
            # every item in it is settled, whichever caller was cancelled.
            outcomes = await self._writer.run_sync(write)
        except BaseException as exc:
            if not started:  # cancelled before the batch began: nothing decided
                self._queue[:0] = batch
                raise
            for pending in batch:  # rolled back: each of its callers hears why
                error = self._batch_failed(exc)
                error.__cause__ = exc
                self._settle(pending, Settled(error=error))
            if not isinstance(exc, Exception):
                raise
            # An Exception is its callers' to raise (from `submit`), not this writer's.
        else:
            self.transactions += 1
            for pending, outcome in zip(batch, outcomes, strict=True):
                self._settle(pending, outcome)
        finally:
            self._writing, self._committing = False, 0
            self._written = trio.Event()
            written.set()

    def _settle(self, pending: _Pending[T, R], outcome: Settled[R]) -> None:
        pending.outcome = outcome
        if self._settled is not None:
            self._settled(pending.item, outcome)


# -- journals of SQL operations ------------------------------------------------------------


class SqlOp(Generic[V]):
    """One unit of work: `fn` in the writer's thread; `after` on trio once it committed."""

    __slots__ = ("after", "fn")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], V], after: Callable[[V], None] | None
    ) -> None:
        self.fn = fn
        self.after = after


class SqlJournal:
    """A store's operations on its one connection, grouped into transactions.

    The store opens the connection and calls `run` in a nursery (its lifetime);
    `submit(fn, after)` returns `fn`'s value once the transaction carrying it committed.
    """

    def __init__(
        self, *, error_type: type[Exception], what: str, max_batch: int, queue_size: int
    ) -> None:
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        self._error_type = error_type
        self._what = what
        self._conn: sqlite3.Connection | None = None
        self._engine: GroupCommit[SqlOp[Any], Any] = GroupCommit(
            self._apply,
            stopped_error=lambda why: error_type(f"{what} {why}"),
            batch_failed=lambda exc: error_type(f"{what} writer failed: {exc}"),
            max_batch=max_batch,
            queue_size=lambda: queue_size,
            settled=_after_commit,
            name=f"duisgw {what}"[:15],  # the OS keeps 15 characters of a thread's name
        )

    @property
    def running(self) -> bool:
        return self._engine.running

    @property
    def queue_depth(self) -> int:
        return self._engine.queue_depth

    @property
    def transactions(self) -> int:
        """Batches committed or rolled back."""
        return self._engine.transactions

    async def run(
        self,
        conn: sqlite3.Connection,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept operations on `conn` until cancelled; then fail what is left.

        Returns once no thread uses `conn` any more (the caller may close it), or
        raises the store's error if a batch outlived STOP_WAIT_SECONDS.
        """
        self._conn = conn
        self._engine.start()
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            if not await self._engine.stop():
                raise self._error_type(
                    f"{self._what} writer: a batch still holds the connection after "
                    f"{STOP_WAIT_SECONDS:.0f}s"
                )

    async def submit(
        self, fn: Callable[[sqlite3.Connection], V], after: Callable[[V], None] | None = None
    ) -> V:
        """Queue `fn`; return its value once the transaction carrying it committed."""
        value: V = await self._engine.submit(SqlOp(fn, after))
        return value

    def _apply(self, batch: Sequence[SqlOp[Any]]) -> list[Settled[Any]]:
        """One transaction for the batch; each op in a savepoint."""
        conn = self._conn
        assert conn is not None, "run() sets the connection before anything is queued"
        outcomes: list[Settled[Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append(Settled(op.fn(conn)))
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO op")
                    error = self._error_type(f"{self._what} database: {exc}")
                    error.__cause__ = exc
                    outcomes.append(Settled(error=error))
                except Exception as exc:  # the caller's refusal, handed to that caller
                    conn.execute("ROLLBACK TO op")
                    outcomes.append(Settled(error=exc))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [Settled(error=self._error_type(f"{self._what} database: {exc}")) for _ in batch]
        return outcomes


def _after_commit(op: SqlOp[Any], outcome: Settled[Any]) -> None:
    if outcome.error is None and op.after is not None:
        op.after(outcome.value)


class Runnable(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...


@asynccontextmanager
async def running(store: Runnable) -> AsyncIterator[None]:
    """`store.run` in a child nursery for the duration of the block (its writer).

    The nursery wraps whatever the caller's block raised; it comes back as it was.
    """
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
