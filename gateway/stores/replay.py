"""Replay protection for trio: decisions shared by every process through one SQLite file.

Several gateway processes may share one state directory (SO_REUSEPORT workers), so no
process may decide from its own memory: a counter accepted by one must be refused by
all. The decision is therefore taken INSIDE a SQLite write transaction (BEGIN
IMMEDIATE ... COMMIT; WAL, synchronous=FULL): SQLite's write lock serialises the
processes, and a caller hears its verdict only once the transaction carrying it is
committed and fsynced. Concurrent callers in one process share one transaction (group
commit, gateway/stores/group_commit.py), so N concurrent requests cost about two
fsyncs, not N.

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
from gateway.stores.group_commit import GroupCommit, Settled
from gateway.stores.replay_sqlite import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    CounterReset,
    CounterStatus,
    ReplayDatabase,
)

# What every ReplayStore raises when a decision was not stored (SQLite or Redis): part of
# the protocol, so callers outside the stores name it here.
from gateway.stores.replay_sqlite import ReplayStoreError as ReplayStoreError
from gateway.stores.sqlite import Synchronous
from mmc.catalogue import SIGNED_PRE_COMMAND_VARIANTS
from mmc.identifiers import Eui64, RequestId

# Admissions waiting for the next transaction; callers beyond it wait. One transaction
# takes them all, and it holds the write lock every other process waits on, so this
# also bounds that wait (a few microseconds per admission).
MAX_QUEUED_ADMISSIONS = 4_096
MAX_BATCH_ADMISSIONS: Final = MAX_QUEUED_ADMISSIONS
# How long this process trusts its in-memory floor of an originator's counter before
# asking the shared file again: an operator's reset (`reset_counter`, possibly on
# another worker) lowers the counter on disk, and every worker follows within this.
FLOOR_TRUST_SECONDS: Final = 1.0

_T = TypeVar("_T")
_REPLAYED: Final = Admission(ReplayVerdict.REPLAYED)
# (RequestID, CommandVariant): one admission in a batch.
_Request = tuple[RequestId, int]


class ReplayStore(Protocol):
    """Replay state every gateway process shares: counters, CV 4 allowances with their
    Pre-Commands, and the audited resets. Every answer is durable when returned. Here on
    SQLite (`SharedReplayGuard`); on Redis in gateway/stores/replay_redis.py."""

    @property
    def waiting(self) -> int:
        """Admissions queued or being decided now (a gauge)."""
        ...

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
        # One transaction decides a whole batch: committed together, or refused together.
        self._commit: GroupCommit[_Request, Admission] = GroupCommit(
            self._decide,
            stopped_error=lambda why: trio.ClosedResourceError(f"the replay guard: {why}"),
            batch_failed=lambda _: ReplayStoreError("the replay decision was not committed"),
            max_batch=MAX_BATCH_ADMISSIONS,
            queue_size=lambda: MAX_QUEUED_ADMISSIONS,  # read at each call
            settled=self._learn,
            name="duisgw replay",
        )
        self._commit.start()
        self._closed = False
        # Per originator, a counter the database is known to hold or exceed, and when
        # that was learnt (trio time). Counters only grow there, except by an operator's
        # reset, so a CV 1-4 at or below a floor younger than FLOOR_TRUST_SECONDS is a
        # replay, refused here with no transaction. Keys are authenticated User IDs:
        # bounded by the User registry.
        self._floor: dict[Eui64, tuple[int, float]] = {}
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
        if self._closed:
            raise trio.ClosedResourceError("the replay guard is closed")
        return await self._commit.submit((request_id, command_variant))

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

    @property
    def waiting(self) -> int:
        return self._commit.queue_depth + self._commit.committing

    def statistics(self) -> ReplayGuardStatistics:
        return ReplayGuardStatistics(
            self._commit.queue_depth,
            self._commit.committing,
            self._commit.transactions,
            self._refused_in_memory,
        )

    async def aclose(self) -> None:
        """Commit what is queued (cancelled callers' admissions too), then close the file."""
        self._closed = True
        await self._commit.flush()
        await self._commit.stop()
        await self._commit.run_alone(self._database.close)

    async def _run(self, work: Callable[[], _T]) -> _T:
        """One blocking call on the connection, after any transaction running now."""
        if self._closed:
            raise trio.ClosedResourceError("the replay guard is closed")
        try:
            return await self._commit.run_alone(work)
        except sqlite3.Error as exc:
            raise ReplayStoreError(f"replay database: {exc}") from exc

    def _decide(self, batch: list[_Request]) -> list[Settled[Admission]]:
        return [Settled(admission) for admission in self._database.decide_batch(batch)]

    def _learn(self, request: _Request, outcome: Settled[Admission]) -> None:
        # FRESH and REPLAYED prove the file holds this counter or more; E12 and the
        # ceiling refusal say nothing about it.
        admission = outcome.value
        if admission is not None and admission.verdict in (
            ReplayVerdict.FRESH,
            ReplayVerdict.REPLAYED,
        ):
            self._raise_floor(request[0])

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
