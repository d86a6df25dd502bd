"""Replay protection: the RequestID counter must strictly increase per originator.

`ReplayGuard` is the sans-IO core: it decides and records, in memory, and keeps a
batch of what changed since the last flush. `ReplayStore` is the durable copy (SQLite
in WAL mode, synchronous=FULL), blocking and single-threaded. `DurableReplayGuard` joins
them for trio: decisions are immediate, and `await flush()` makes every decision taken
so far durable, with one transaction (one fsync) for all the requests that wait on it
at once (group commit). The pipeline flushes before it acknowledges, so an
acknowledged counter is never accepted again after a crash.

Signed Pre-Commands. A CV 4 request is transformed into a Pre-Command; the User signs
it and sends it back as a SignedPreCommand with CV 5, 6 or 7 and the SAME RequestID.
`admit` therefore records, for each fresh CV 4, an allowance for exactly one CV 5/6/7
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

import enum
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import trio

from mmc.identifiers import Eui64, RequestId

SIGNED_PRE_COMMAND_VARIANTS = frozenset({5, 6, 7})
TRANSFORM_VARIANT = 4
# A supplier may transform a large batch (a tariff change across its estate) and sign
# the Pre-Commands offline later; this bounds memory, not a realistic backlog.
MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR = 65_536


class ReplayVerdict(enum.Enum):
    FRESH = None
    REPLAYED = "E1"
    NO_PRE_COMMAND = "E12"

    @property
    def code(self) -> str | None:
        """The DUIS response code to refuse with; None when the request may proceed."""
        return self.value  # type: ignore[no-any-return]


class ReplayBatch:
    """What changed since the last flush, in the form the store applies."""

    __slots__ = ("advanced", "consumed", "granted")

    def __init__(self) -> None:
        self.advanced: dict[Eui64, int] = {}
        self.granted: set[tuple[Eui64, int]] = set()
        self.consumed: set[tuple[Eui64, int]] = set()

    def __bool__(self) -> bool:
        return bool(self.advanced or self.granted or self.consumed)

    def merge_older(self, older: ReplayBatch) -> None:
        """Fold a batch that failed to write back in, under the newer changes."""
        for originator, counter in older.advanced.items():
            if counter > self.advanced.get(originator, -1):
                self.advanced[originator] = counter
        # Applying grants before consumptions keeps a grant consumed since then consumed.
        self.granted |= older.granted
        self.consumed |= older.consumed


class ReplayGuard:
    """The in-memory decision. Not thread-safe: one trio thread owns it."""

    __slots__ = ("_batch", "_last", "_open", "_sequence")

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
        self._batch = ReplayBatch()
        self._sequence = 0  # counts changes; flush() waits for a sequence to be durable

    @property
    def sequence(self) -> int:
        return self._sequence

    def last_counter(self, originator: Eui64) -> int | None:
        return self._last.get(originator)

    def check_and_advance(self, originator: Eui64, counter: int) -> bool:
        """True (and remembered) if counter is above every counter seen from originator."""
        last = self._last.get(originator)
        if last is not None and counter <= last:
            return False
        self._last[originator] = counter
        self._batch.advanced[originator] = counter
        self._sequence += 1
        return True

    def allow_signed_pre_command(self, originator: Eui64, counter: int) -> None:
        """Let one CV 5/6/7 reuse this counter (call after a fresh CV 4)."""
        allowances = self._open.setdefault(originator, {})
        if counter in allowances:
            return
        allowances[counter] = None
        self._record_grant(originator, counter)
        if len(allowances) > MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR:
            oldest = next(iter(allowances))
            del allowances[oldest]
            self._record_consume(originator, oldest)
        self._sequence += 1

    def consume_signed_pre_command(self, originator: Eui64, counter: int) -> bool:
        """True (once) if a CV 4 with this originator and counter left an allowance."""
        allowances = self._open.get(originator)
        if allowances is None or counter not in allowances:
            return False
        del allowances[counter]
        if not allowances:
            del self._open[originator]
        self._record_consume(originator, counter)
        self._sequence += 1
        return True

    def admit(self, request_id: RequestId, command_variant: int) -> ReplayVerdict:
        """The whole rule for one authenticated request; call it after signature checks."""
        originator, counter = request_id.originator, request_id.counter
        if command_variant in SIGNED_PRE_COMMAND_VARIANTS:
            if self.consume_signed_pre_command(originator, counter):
                return ReplayVerdict.FRESH
            last = self._last.get(originator)
            if last is not None and counter <= last:
                return ReplayVerdict.REPLAYED
            return ReplayVerdict.NO_PRE_COMMAND
        if not self.check_and_advance(originator, counter):
            return ReplayVerdict.REPLAYED
        if command_variant == TRANSFORM_VARIANT:
            self.allow_signed_pre_command(originator, counter)
        return ReplayVerdict.FRESH

    def take_batch(self) -> tuple[ReplayBatch, int]:
        """Hand the pending changes (and the sequence they reach) to the writer."""
        batch, self._batch = self._batch, ReplayBatch()
        return batch, self._sequence

    def return_batch(self, batch: ReplayBatch) -> None:
        """Put back a batch the writer could not make durable, to retry with the next."""
        self._batch.merge_older(batch)

    def _record_grant(self, originator: Eui64, counter: int) -> None:
        self._batch.consumed.discard((originator, counter))
        self._batch.granted.add((originator, counter))

    def _record_consume(self, originator: Eui64, counter: int) -> None:
        # Delete on disk even if the grant seems unwritten: the store applies grants
        # before deletions, so this is always right and never resurrects an allowance.
        self._batch.granted.discard((originator, counter))
        self._batch.consumed.add((originator, counter))


# SQLite integers are signed 64-bit; RequestID counters are unsigned 64-bit. Shifting
# by 2**63 keeps every counter representable and keeps their order.
_SHIFT = 2**63

_SCHEMA = """
CREATE TABLE IF NOT EXISTS last_counter (
    originator TEXT PRIMARY KEY, counter INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS open_pre_command (
    originator TEXT NOT NULL, counter INTEGER NOT NULL,
    PRIMARY KEY (originator, counter)) WITHOUT ROWID;
"""


class ReplayStore:
    """The durable copy of a ReplayGuard. Blocking; use from one thread at a time."""

    def __init__(self, path: Path) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread off
        # because trio's worker threads vary; DurableReplayGuard serialises all use.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsynced, so an acknowledged counter survives power loss.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def load(self) -> ReplayGuard:
        last = {
            originator: counter + _SHIFT
            for originator, counter in self._db.execute(
                "SELECT originator, counter FROM last_counter"
            )
        }
        open_pre_commands: dict[Eui64, list[int]] = {}
        for originator, counter in self._db.execute(
            "SELECT originator, counter FROM open_pre_command"
        ):
            open_pre_commands.setdefault(originator, []).append(counter + _SHIFT)
        return ReplayGuard(last, open_pre_commands)

    def apply(self, batch: ReplayBatch) -> None:
        """Write one batch in one transaction (one fsync)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO last_counter (originator, counter) VALUES (?, ?) "
                "ON CONFLICT (originator) DO UPDATE "
                "SET counter = max(counter, excluded.counter)",
                [(o, c - _SHIFT) for o, c in batch.advanced.items()],
            )
            db.executemany(
                "INSERT OR IGNORE INTO open_pre_command (originator, counter) VALUES (?, ?)",
                [(o, c - _SHIFT) for o, c in batch.granted],
            )
            db.executemany(
                "DELETE FROM open_pre_command WHERE originator = ? AND counter = ?",
                [(o, c - _SHIFT) for o, c in batch.consumed],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class DurableReplayGuard:
    """A ReplayGuard whose decisions `flush()` makes durable, for use from trio."""

    def __init__(self, store: ReplayStore, guard: ReplayGuard) -> None:
        self._store = store
        self.guard = guard
        self._durable_sequence = guard.sequence
        self._writing = False
        self._written = trio.Event()
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: Path) -> DurableReplayGuard:
        def _open() -> tuple[ReplayStore, ReplayGuard]:
            store = ReplayStore(path)
            return store, store.load()

        store, guard = await trio.to_thread.run_sync(_open)
        return cls(store, guard)

    def admit(self, request_id: RequestId, command_variant: int) -> ReplayVerdict:
        return self.guard.admit(request_id, command_variant)

    async def flush(self) -> None:
        """Return once every decision taken before the call is on disk.

        Callers that arrive while a write is running wait for it and then share the
        next one, so N concurrent requests cost about two fsyncs, not N.
        """
        target = self.guard.sequence
        while self._durable_sequence < target:
            if self._writing:
                await self._written.wait()
                continue
            await self._write_once()

    async def _write_once(self) -> None:
        self._writing = True
        written = self._written
        batch, sequence = self.guard.take_batch()
        try:
            # Not abandoned on cancel: once started, the transaction completes and
            # the batch is accounted for either way.
            await trio.to_thread.run_sync(self._store.apply, batch, limiter=self._limiter)
        except BaseException:
            self.guard.return_batch(batch)
            raise
        else:
            self._durable_sequence = max(self._durable_sequence, sequence)
        finally:
            self._writing = False
            self._written = trio.Event()
            written.set()

    async def aclose(self) -> None:
        """Flush what is pending and close the database."""
        await self.flush()
        await trio.to_thread.run_sync(self._store.close, limiter=self._limiter)
