"""Replay protection for trio: decisions shared by every process through one SQLite file.

Several gateway processes may share one state directory (SO_REUSEPORT workers), so no
process may decide from its own memory: a counter accepted by one must be refused by
all. The decision is therefore taken INSIDE a SQLite write transaction (BEGIN
IMMEDIATE ... COMMIT; WAL, synchronous=FULL): SQLite's write lock serialises the
processes, and a caller hears its verdict only once the transaction carrying it is
committed and fsynced. Concurrent callers in one process share one transaction (group
commit), so N concurrent requests cost about two fsyncs, not N.

- `gateway.core.replay_rules`: the rule (`decide`) and its in-memory model.
- `gateway.stores.replay_sqlite`: `ReplayDatabase`, the SQLite book and its transactions.
- here: `ReplayStore`, what the gateway needs of replay state (a Redis backend would
  implement it too), and `SharedReplayGuard`, its SQLite implementation: queued
  admissions run through `ReplayDatabase` for trio, and the rarer operations
  (recording an issued Pre-Command, an operator's reset, a status read) one
  transaction each on the same connection.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol, TypeVar

import trio

from gateway.core.replay_rules import DEFAULT_MAX_COUNTER, Admission, ReplayVerdict
from gateway.stores.replay_sqlite import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    CounterReset,
    CounterStatus,
    ReplayDatabase,
    ReplayStoreError,
)
from gateway.stores.sqlite import Synchronous
from mmc.catalogue import SIGNED_PRE_COMMAND_VARIANTS
from mmc.identifiers import Eui64, RequestId

# Admissions waiting for the next transaction; callers beyond it wait. One transaction
# takes them all, and it holds the write lock every other process waits on, so this
# also bounds that wait (a few microseconds per admission).
MAX_QUEUED_ADMISSIONS = 4_096
# How long this process trusts its in-memory floor of an originator's counter before
# asking the shared file again: an operator's reset (`reset_counter`, possibly on
# another worker) lowers the counter on disk, and every worker follows within this.
FLOOR_TRUST_SECONDS: Final = 1.0

_T = TypeVar("_T")
_REPLAYED: Final = Admission(ReplayVerdict.REPLAYED)


class _Admission:
    __slots__ = ("admission", "command_variant", "error", "request_id")

    def __init__(self, request_id: RequestId, command_variant: int) -> None:
        self.request_id = request_id
        self.command_variant = command_variant
        self.admission: Admission | None = None  # set once committed
        self.error: BaseException | None = None  # set if its transaction rolled back


class ReplayStore(Protocol):
    """Replay state every gateway process shares: counters, CV 4 allowances with their
    Pre-Commands, and the audited resets. Every answer is durable when returned."""

    async def admit(self, request_id: RequestId, command_variant: int) -> Admission: ...
    async def record_pre_command(self, request_id: RequestId, gbcs: bytes) -> bool: ...
    async def status(self, originator: Eui64) -> CounterStatus: ...
    async def reset_counter(
        self,
        originator: Eui64,
        to: int | None,
        *,
        at: dt.datetime,
        operator: str,
        peer: str,
        reason: str = "",
    ) -> CounterReset: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayGuardStatistics:
    queued: int  # admissions waiting for the next transaction (a gauge)
    committing: int  # admissions in the transaction running now (a gauge)
    transactions_total: int  # committed group transactions since open
    refused_in_memory_total: int  # replays refused from the local floor, no transaction


class SharedReplayGuard:
    """Replay decisions shared by every process using one SQLite file, for trio."""

    def __init__(self, database: ReplayDatabase) -> None:
        self._database = database
        self._limiter = trio.CapacityLimiter(1)  # one thread on the connection at a time
        self._queue: list[_Admission] = []
        self._committing = 0
        self._writing = False
        self._written = trio.Event()
        self._closed = False
        self._last: _Admission | None = None
        # Per originator, a counter the database is known to hold or exceed, and when
        # that was learnt (trio time). Counters only grow there, except by an operator's
        # reset, so a CV 1-4 at or below a floor younger than FLOOR_TRUST_SECONDS is a
        # replay, refused here with no transaction. Keys are authenticated User IDs:
        # bounded by the User registry.
        self._floor: dict[Eui64, tuple[int, float]] = {}
        self._transactions = 0
        self._refused_in_memory = 0

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        synchronous: Synchronous = "FULL",
        max_counter: int = DEFAULT_MAX_COUNTER,
    ) -> SharedReplayGuard:
        opener = functools.partial(
            ReplayDatabase,
            path,
            busy_timeout_seconds=busy_timeout_seconds,
            synchronous=synchronous,
            max_counter=max_counter,
        )
        return cls(await trio.to_thread.run_sync(opener))

    async def admit(self, request_id: RequestId, command_variant: int) -> Admission:
        """The verdict for one request, once it is committed to the shared file.

        Raises ReplayStoreError if its transaction failed (nothing was decided). A caller
        cancelled while waiting may have spent its counter: safe, never accepted twice.
        """
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled already: spend nothing
        if command_variant not in SIGNED_PRE_COMMAND_VARIANTS and self._below_floor(request_id):
            self._refused_in_memory += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return _REPLAYED
        while len(self._queue) >= MAX_QUEUED_ADMISSIONS:
            await self._write_or_wait()
        return await self._outcome(self._enqueue(request_id, command_variant))

    async def record_pre_command(self, request_id: RequestId, gbcs: bytes) -> bool:
        """Keep the Pre-Command issued for a CV 4 with its allowance (durable on return),
        for whichever worker gets the CV 5/6/7. False if the allowance is gone."""
        return await self._run(
            functools.partial(self._database.record_pre_command, request_id, gbcs)
        )

    async def status(self, originator: Eui64) -> CounterStatus:
        return await self._run(functools.partial(self._database.status, originator))

    async def reset_counter(
        self,
        originator: Eui64,
        to: int | None,
        *,
        at: dt.datetime,
        operator: str,
        peer: str,
        reason: str = "",
    ) -> CounterReset:
        """An operator's audited reset (see ReplayDatabase.reset_counter)."""
        reset = functools.partial(
            self._database.reset_counter,
            originator,
            to,
            at=at,
            operator=operator,
            peer=peer,
            reason=reason,
        )
        record = await self._run(reset)
        self._floor.pop(originator, None)  # other workers follow within FLOOR_TRUST_SECONDS
        return record

    def statistics(self) -> ReplayGuardStatistics:
        return ReplayGuardStatistics(
            len(self._queue), self._committing, self._transactions, self._refused_in_memory
        )

    async def aclose(self) -> None:
        """Commit what is queued (cancelled callers' admissions too), then close the file."""
        self._closed = True
        while self._writing or self._queue:
            await self._write_or_wait()
        await trio.to_thread.run_sync(self._database.close, limiter=self._limiter)

    async def _run(self, work: Callable[[], _T]) -> _T:
        """One blocking call on the connection, after any transaction running now."""
        if self._closed:
            raise trio.ClosedResourceError("the replay guard is closed")
        try:
            return await trio.to_thread.run_sync(work, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise ReplayStoreError(f"replay database: {exc}") from exc

    def _below_floor(self, request_id: RequestId) -> bool:
        floor = self._floor.get(request_id.originator)
        if floor is None:
            return False
        counter, learnt_at = floor
        if trio.current_time() - learnt_at > FLOOR_TRUST_SECONDS:
            del self._floor[request_id.originator]
            return False
        return request_id.counter <= counter

    def _raise_floor(self, request_id: RequestId) -> None:
        originator, counter = request_id.originator, request_id.counter
        floor = self._floor.get(originator)
        if floor is None or counter >= floor[0]:
            self._floor[originator] = (counter, trio.current_time())

    def _enqueue(self, request_id: RequestId, command_variant: int) -> _Admission:
        if self._closed:
            raise trio.ClosedResourceError("the replay guard is closed")
        admission = self._last = _Admission(request_id, command_variant)
        self._queue.append(admission)
        return admission

    async def _outcome(self, admission: _Admission) -> Admission:
        while admission.admission is None and admission.error is None:
            await self._write_or_wait()
        if admission.admission is None:
            # A fresh exception per caller: many tasks re-raising one object would
            # tangle its traceback.
            raise ReplayStoreError("the replay decision was not committed") from admission.error
        return admission.admission

    async def _write_or_wait(self) -> None:
        # Whoever needs a transaction while none runs becomes the writer, so there is
        # always a writer while anyone waits and no background task (the guard has no
        # nursery of its own); the others wait for it and then look again.
        if self._writing:
            await self._written.wait()
            return
        if not self._queue:  # their admissions were in the batch that just finished
            await trio.lowlevel.checkpoint()
            return
        batch, self._queue = self._queue, []
        self._writing, self._committing, written = True, len(batch), self._written
        started = False

        def run() -> list[Admission]:
            nonlocal started
            started = True
            return self._database.decide_batch([(a.request_id, a.command_variant) for a in batch])

        try:
            # Not abandoned on cancel: once the thread runs, the transaction completes
            # and every admission in it is answered, whichever caller was cancelled.
            decided = await trio.to_thread.run_sync(run, limiter=self._limiter)
        except BaseException as exc:
            if not started:  # cancelled before BEGIN: nothing decided; back in front, in order
                self._queue[:0] = batch
                raise
            for admission in batch:  # rolled back: each of its callers hears why
                admission.error = exc
            if not isinstance(exc, Exception):
                raise
            # An Exception is theirs to raise (see _outcome), not this writer's: its own
            # admission may be in another batch.
        else:
            self._transactions += 1
            for admission, outcome in zip(batch, decided, strict=True):
                admission.admission = outcome
                # FRESH and REPLAYED prove the file holds this counter or more; E12 and
                # the ceiling refusal say nothing about it.
                if outcome.verdict in (ReplayVerdict.FRESH, ReplayVerdict.REPLAYED):
                    self._raise_floor(admission.request_id)
        finally:
            self._writing, self._committing = False, 0
            self._written = trio.Event()
            written.set()
