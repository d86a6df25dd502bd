"""Window counters as values, so the in-process store's counts outlive the process.

`counter_state` turns a live counter into a `CounterState` (msgspec, so a store
can keep it as bytes); `restored_counter` builds the counter a rule set needs
from one, or None when the saved shape no longer fits (a window that switched
between exact and bucketed, or a new bucket count): that counter starts from
zero, as `MemoryThresholdStore.reload` does. Stamps and bucket indices are on
the wall-clock scale the stores already use, so a count saved before a restart
expires at the same moment after it.
"""

from __future__ import annotations

import msgspec

from thresholds.config import ThresholdConfig
from thresholds.engine import CounterSpec, new_counter
from thresholds.windows import BucketWindow, ExactWindow, WindowCounter

# (User ID, SRV or "*", window seconds): one counter of one User ID.
CounterKey = tuple[str, str, int]


class ExactState(msgspec.Struct, frozen=True, tag="exact"):
    stamps: tuple[float, ...]  # oldest first, all inside the window when saved


class BucketState(msgspec.Struct, frozen=True, tag="buckets"):
    slots: int
    head: int  # absolute index of the newest bucket
    counts: tuple[int, ...]  # by slot (index % slots)


CounterState = ExactState | BucketState

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(CounterState)


def encode_state(state: CounterState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(raw: bytes) -> CounterState:
    """Raises msgspec.DecodeError on bytes this version cannot read."""
    return _DECODER.decode(raw)


def counter_state(counter: WindowCounter, now_seconds: float) -> CounterState | None:
    """The counter's live counts at `now_seconds`; None when it counts nothing."""
    if counter.count(now_seconds) == 0:  # also expires what fell out of the window
        return None
    if isinstance(counter, ExactWindow):
        return ExactState(tuple(counter.stamps))
    assert isinstance(counter, BucketWindow)
    return BucketState(counter.slots, counter.head, tuple(counter.counts))


def restored_counter(
    state: CounterState, spec: CounterSpec, config: ThresholdConfig
) -> WindowCounter | None:
    """A counter for `spec` holding the saved counts, or None if they do not fit it."""
    counter = new_counter(spec, config)
    if isinstance(counter, ExactWindow) and isinstance(state, ExactState):
        counter.stamps.extend(state.stamps)  # maxlen keeps the newest `capacity`
        return counter
    if (
        isinstance(counter, BucketWindow)
        and isinstance(state, BucketState)
        and state.slots == counter.slots
        and len(state.counts) == counter.slots
    ):
        counter.head = state.head
        counter.counts = list(state.counts)
        counter.total = sum(state.counts)
        return counter
    return None
