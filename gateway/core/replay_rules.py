"""The replay rule: RequestID counters strictly increase per originator (sans-IO).

`decide` is the whole rule, a plain function over a `CounterBook` (the facts it
reads and changes). `ReplayGuard` is the in-memory book: the model, and the
reference the SQLite book (`gateway.stores.replay_sqlite`) must agree with.

Signed Pre-Commands. A CV 4 request is transformed into a Pre-Command; the User signs
it and sends it back as a SignedPreCommand with CV 5, 6 or 7 and the SAME RequestID.
`decide` therefore records, for each fresh CV 4, an allowance for exactly one CV 5/6/7
with that originator and counter; dispatch then records the Pre-Command (GBCS) it
issued on that allowance (`record_pre_command`), and the CV 5/6/7 consumes allowance
and Pre-Command together, so the caller correlates against what was issued. Both live
in the book every worker shares, so any worker, and a restarted one, correlates.
Allowances are bounded per originator (the oldest is dropped first).

Counter ceiling. DUIS counters are uint64, and a User is locked out once it has used
a counter no later one can exceed (2**64 - 1 is accepted once, then everything is
refused). Counters come from clocks or sequences: the DCC's tools use milliseconds
since 1970 (about 1.8e12 now), `duisgw send` microseconds, and even nanoseconds stay
below 2**63 until 2262. So by default a counter above `DEFAULT_MAX_COUNTER` (2**63 - 1)
is refused without being recorded: it came from neither, and accepting it would spend
half the originator's counter space or all of it. `[replay] max_counter` moves it.

Response codes (present in every served DUIS version's ResponseCode enumeration):
- E1 for a counter that is not above the last one accepted from that originator (a
  replay or a reordering), for a second Signed Pre-Command on one counter, and for a
  counter above the ceiling. DUIS's E1 is "Failed Authorisation - Invalid User": the
  RequestID claims the User, but such a counter cannot come from that User acting now.
  The numbered codes beyond E31 have no published meaning we could check.
- E12 (Request / CommandVariant mismatch) for a CV 5/6/7 whose counter is fresh: a
  Signed Pre-Command without the CV 4 request it must answer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, Protocol

import msgspec

from mmc.catalogue import SIGNED_PRE_COMMAND_VARIANTS
from mmc.identifiers import MAX_COUNTER, Eui64, RequestId

TRANSFORM_VARIANT: Final = 4
# A supplier may transform a large batch (a tariff change across its estate) and sign
# the Pre-Commands offline later; this bounds storage, not a realistic backlog.
MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR = 65_536
DEFAULT_MAX_COUNTER: Final = 2**63 - 1


class ReplayVerdict(enum.Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"
    NO_PRE_COMMAND = "no_pre_command"
    ABOVE_CEILING = "above_ceiling"

    @property
    def code(self) -> str | None:
        """The DUIS response code to refuse with; None when the request may proceed."""
        return _CODES[self]


_CODES: Final = {
    ReplayVerdict.FRESH: None,
    ReplayVerdict.REPLAYED: "E1",
    ReplayVerdict.NO_PRE_COMMAND: "E12",
    ReplayVerdict.ABOVE_CEILING: "E1",
}


class Admission(msgspec.Struct, frozen=True):
    verdict: ReplayVerdict
    # For a fresh CV 5/6/7: the Pre-Command GBCS issued for its CV 4 (None if dispatch
    # never recorded one, e.g. the CV 4 is still quarantined); its allowance is spent.
    pre_command: bytes | None = None


class Allowance(msgspec.Struct, frozen=True):
    """An open CV 4 allowance, taken by its CV 5/6/7."""

    pre_command: bytes | None


class CounterBook(Protocol):
    def last_counter(self, originator: Eui64) -> int | None: ...
    def check_and_advance(self, originator: Eui64, counter: int) -> bool: ...
    def allow_signed_pre_command(self, originator: Eui64, counter: int) -> None: ...
    def consume_signed_pre_command(self, originator: Eui64, counter: int) -> Allowance | None: ...


def decide(
    book: CounterBook,
    request_id: RequestId,
    command_variant: int,
    max_counter: int = DEFAULT_MAX_COUNTER,
) -> Admission:
    """The whole rule for one authenticated request; call it after signature checks."""
    originator, counter = request_id.originator, request_id.counter
    if counter > max_counter:
        return Admission(ReplayVerdict.ABOVE_CEILING)
    if command_variant in SIGNED_PRE_COMMAND_VARIANTS:
        allowance = book.consume_signed_pre_command(originator, counter)
        if allowance is not None:
            return Admission(ReplayVerdict.FRESH, allowance.pre_command)
        last = book.last_counter(originator)
        if last is not None and counter <= last:
            return Admission(ReplayVerdict.REPLAYED)
        return Admission(ReplayVerdict.NO_PRE_COMMAND)
    if not book.check_and_advance(originator, counter):
        return Admission(ReplayVerdict.REPLAYED)
    if command_variant == TRANSFORM_VARIANT:
        book.allow_signed_pre_command(originator, counter)
    return Admission(ReplayVerdict.FRESH)


class ReplayGuard:
    """The in-memory CounterBook. Not thread-safe, not shared: a model and a bench."""

    __slots__ = ("_last", "_max_counter", "_open")

    def __init__(
        self,
        last: Mapping[Eui64, int] | None = None,
        open_pre_commands: Mapping[Eui64, Mapping[int, bytes | None]] | None = None,
        *,
        max_counter: int = DEFAULT_MAX_COUNTER,
    ) -> None:
        self._last: dict[Eui64, int] = dict(last or {})
        # Insertion order is counter order (allowances are made for fresh counters only),
        # so the first key is the oldest allowance. Values: the issued Pre-Command.
        self._open: dict[Eui64, dict[int, bytes | None]] = {
            originator: dict(sorted(allowances.items()))
            for originator, allowances in (open_pre_commands or {}).items()
        }
        self._max_counter = max_counter

    def last_counter(self, originator: Eui64) -> int | None:
        return self._last.get(originator)

    def open_pre_commands(self, originator: Eui64) -> dict[int, bytes | None]:
        return dict(self._open.get(originator, {}))

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

    def record_pre_command(self, originator: Eui64, counter: int, gbcs: bytes) -> bool:
        """Attach the issued Pre-Command to its open allowance; False if there is none."""
        allowances = self._open.get(originator)
        if allowances is None or counter not in allowances:
            return False
        allowances[counter] = gbcs
        return True

    def consume_signed_pre_command(self, originator: Eui64, counter: int) -> Allowance | None:
        """The allowance (once) if a CV 4 with this originator and counter left one."""
        allowances = self._open.get(originator)
        if allowances is None or counter not in allowances:
            return None
        allowance = Allowance(allowances.pop(counter))
        if not allowances:
            del self._open[originator]
        return allowance

    def admit(self, request_id: RequestId, command_variant: int) -> Admission:
        return decide(self, request_id, command_variant, self._max_counter)


def check_counter(value: int) -> int:
    """A counter an operator typed (reset --to, max_counter): a DUIS uint64."""
    if not 0 <= value <= MAX_COUNTER:
        raise ValueError(f"a RequestID counter is 0..{MAX_COUNTER}, not {value}")
    return value
