"""Replay protection: the RequestID counter must strictly increase per originator.

Several gateway processes may share one state directory (SO_REUSEPORT workers), so no
process may decide from its own memory: a counter accepted by one must be refused by
all. The decision is therefore taken INSIDE a SQLite write transaction (BEGIN
IMMEDIATE ... COMMIT; WAL, synchronous=FULL): SQLite's write lock serialises the
processes, and a caller hears its verdict only once the transaction carrying it is
committed and fsynced. Concurrent callers in one process share one transaction (group
commit), so N concurrent requests cost about two fsyncs, not N.

- `decide` is the rule, a plain function over a `CounterBook` (the four facts it reads
  and changes). `ReplayGuard` is the in-memory book: the sans-IO model, and the
  reference the database must agree with.
- `ReplayDatabase` is the SQLite book and its transactions: blocking, one thread at a
  time. It lives in `gateway.replay_store`, with the schema and its migration, and is
  re-exported here.
- `SharedReplayGuard` runs queued admissions through `ReplayDatabase` for trio.

Signed Pre-Commands. A CV 4 request is transformed into a Pre-Command; the User signs
it and sends it back as a SignedPreCommand with CV 5, 6 or 7 and the SAME RequestID.
`decide` therefore records, for each fresh CV 4, an allowance for exactly one CV 5/6/7
with that originator and counter; using it consumes it. Allowances are durable too and
bounded per originator (the oldest is dropped first).

Response codes (present in every served DUIS version's ResponseCode enumeration):
- E1 for a counter that is not above the last one accepted from that originator (a
  replay or a reordering), and for a second Signed Pre-Command on one counter. DUIS's
  E1 is "Failed Authorisation - Invalid User": the RequestID claims the User, but a
  reused counter cannot come from that User acting now. The numbered codes beyond E31
  have no published meaning we could check, so we do not borrow one.
- E12 (Request / CommandVariant mismatch) for a CV 5/6/7 whose counter is fresh: a
  Signed Pre-Command without the CV 4 request it must answer.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import trio

from gateway.replay_store import DEFAULT_BUSY_TIMEOUT_SECONDS
from gateway.replay_store import ReplayDatabase as ReplayDatabase  # re-exported for callers
from gateway.sqlite_durability import Synchronous
from mmc.identifiers import Eui64, RequestId

SIGNED_PRE_COMMAND_VARIANTS = frozenset({5, 6, 7})
TRANSFORM_VARIANT = 4
# A supplier may transform a large batch (a tariff change across its estate) and sign
# the Pre-Commands offline later; this bounds storage, not a realistic backlog.
MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR = 65_536
# Admissions waiting for the next transaction; callers beyond it wait. One transaction
# takes them all, and it holds the write lock every other process waits on, so this
# also bounds that wait (a few microseconds per admission).
MAX_QUEUED_ADMISSIONS = 4_096


class ReplayVerdict(enum.Enum):
    FRESH = None
    REPLAYED = "E1"
    NO_PRE_COMMAND = "E12"

    @property
    def code(self) -> str | None:
        """The DUIS response code to refuse with; None when the request may proceed."""
        return self.value  # type: ignore[no-any-return]


class ReplayStoreError(Exception):
    """The replay database did not commit a decision: our fault, not the User's (5xx)."""


class CounterBook(Protocol):
    def last_counter(self, originator: Eui64) -> int | None: ...
    def check_and_advance(self, originator: Eui64, counter: int) -> bool: ...
    def allow_signed_pre_command(self, originator: Eui64, counter: int) -> None: ...
    def consume_signed_pre_command(self, originator: Eui64, counter: int) -> bool: ...


def decide(book: CounterBook, request_id: RequestId, command_variant: int) -> ReplayVerdict:
    """The whole rule for one authenticated request; call it after signature checks."""
    originator, counter = request_id.originator, request_id.counter
    if command_variant in SIGNED_PRE_COMMAND_VARIANTS:
        if book.consume_signed_pre_command(originator, counter):
            return ReplayVerdict.FRESH
        last = book.last_counter(originator)
        if last is not None and counter <= last:
            return ReplayVerdict.REPLAYED
        return ReplayVerdict.NO_PRE_COMMAND
    if not book.check_and_advance(originator, counter):
        return ReplayVerdict.REPLAYED
    if command_variant == TRANSFORM_VARIANT:
        book.allow_signed_pre_command(originator, counter)
    return ReplayVerdict.FRESH


class ReplayGuard:
    """The in-memory CounterBook. Not thread-safe, not shared: a model and a bench."""

    __slots__ = ("_last", "_open")

    def __init__(
        self,
        last: Mapping[Eui64, int] | None = None,
        open_pre_commands: Mapping[Eui64, list[int]] | None = None,
    ) -> None:
        self._last: dict[Eui64, int] = dict(last or {})
        # Insertion order is counter order (allowances are made for fresh counters only),
        # so the first key is the oldest allowance.
        self._open: dict[Eui64, dict[int, None]] = {
            originator: dict.fromkeys(sorted(counters))
            for originator, counters in (open_pre_commands or {}).items()
        }

    def last_counter(self, originator: Eui64) -> int | None:
        return self._last.get(originator)

    def check_and_advance(self, originator: Eui64, counter: int) -> bool:
        """True (and remembered) if counter is above every counter seen from originator."""
        last = self._last.get(originator)
        if last is not None and counter <= last:
            return False
        self._last[originator] = counter
        return True

    def allow_signed_pre_command(self, originator: Eui64, counter: int) -> None:
        """Let one CV 5/6/7 reuse this counter (call after a fresh CV 4)."""
        allowances = self._open.setdefault(originator, {})
        allowances[counter] = None
        if len(allowances) > MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR:
            del allowances[next(iter(allowances))]

    def consume_signed_pre_command(self, originator: Eui64, counter: int) -> bool:
        """True (once) if a CV 4 with this originator and counter left an allowance."""
        allowances = self._open.get(originator)
        if allowances is None or counter not in allowances:
            return False
        del allowances[counter]
        if not allowances:
            del self._open[originator]
        return True

    def admit(self, request_id: RequestId, command_variant: int) -> ReplayVerdict:
        return decide(self, request_id, command_variant)


class _Admission:
    __slots__ = ("command_variant", "error", "request_id", "verdict")

    def __init__(self, request_id: RequestId, command_variant: int) -> None:
        self.request_id = request_id
        self.command_variant = command_variant
        self.verdict: ReplayVerdict | None = None  # set once committed
        self.error: BaseException | None = None  # set if its transaction rolled back


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
        # Per originator, a counter the database is known to hold or exceed. It only
        # grows there, so a CV 1-4 at or below it is a replay, refused here with no
        # transaction. Keys are authenticated User IDs: bounded by the User registry.
        self._floor: dict[Eui64, int] = {}
        self._transactions = 0
        self._refused_in_memory = 0

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        synchronous: Synchronous = "FULL",
    ) -> SharedReplayGuard:
        opener = functools.partial(
            ReplayDatabase, path, busy_timeout_seconds=busy_timeout_seconds, synchronous=synchronous
        )
        return cls(await trio.to_thread.run_sync(opener))

    async def admit(self, request_id: RequestId, command_variant: int) -> ReplayVerdict:
        """The verdict for one request, once it is committed to the shared file.

        Raises ReplayStoreError if its transaction failed (nothing was decided). A caller
        cancelled while waiting may have spent its counter: safe, never accepted twice.
        """
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled already: spend nothing
        if (
            command_variant not in SIGNED_PRE_COMMAND_VARIANTS
            and request_id.counter <= self._floor.get(request_id.originator, -1)
        ):
            self._refused_in_memory += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return ReplayVerdict.REPLAYED
        while len(self._queue) >= MAX_QUEUED_ADMISSIONS:
            await self._write_or_wait()
        return await self._outcome(self._enqueue(request_id, command_variant))

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

    def _raise_floor(self, request_id: RequestId) -> None:
        originator, counter = request_id.originator, request_id.counter
        if counter > self._floor.get(originator, -1):
            self._floor[originator] = counter

    def _enqueue(self, request_id: RequestId, command_variant: int) -> _Admission:
        if self._closed:
            raise trio.ClosedResourceError("the replay guard is closed")
        admission = self._last = _Admission(request_id, command_variant)
        self._queue.append(admission)
        return admission

    async def _outcome(self, admission: _Admission) -> ReplayVerdict:
        while admission.verdict is None and admission.error is None:
            await self._write_or_wait()
        if admission.verdict is None:
            # A fresh exception per caller: many tasks re-raising one object would
            # tangle its traceback.
            raise ReplayStoreError("the replay decision was not committed") from admission.error
        return admission.verdict

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

        def run() -> list[ReplayVerdict]:
            nonlocal started
            started = True
            return self._database.decide_batch([(a.request_id, a.command_variant) for a in batch])

        try:
            # Not abandoned on cancel: once the thread runs, the transaction completes
            # and every admission in it is answered, whichever caller was cancelled.
            verdicts = await trio.to_thread.run_sync(run, limiter=self._limiter)
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
            for admission, verdict in zip(batch, verdicts, strict=True):
                admission.verdict = verdict
                if verdict is not ReplayVerdict.NO_PRE_COMMAND:  # E12: counter above all
                    self._raise_floor(admission.request_id)
        finally:
            self._writing, self._committing = False, 0
            self._written = trio.Event()
            written.set()
