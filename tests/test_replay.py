"""Replay protection: strictly increasing counters, the Signed Pre-Command exception,
durability across restarts, group commit."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gateway import replay
from gateway.replay import (
    DurableReplayGuard,
    ReplayBatch,
    ReplayGuard,
    ReplayStore,
    ReplayVerdict,
)
from mmc.identifiers import MAX_COUNTER, RequestId

SUP = "90-B3-D5-1F-30-01-00-00"
NET = "90-B3-D5-1F-30-02-00-00"
ESME = "00-DB-12-34-56-78-90-A0"


def rid(counter: int, originator: str = SUP, target: str = ESME) -> RequestId:
    return RequestId(originator, target, counter)


def test_counters_strictly_increase_per_originator() -> None:
    guard = ReplayGuard()
    assert guard.check_and_advance(SUP, 10)
    assert not guard.check_and_advance(SUP, 10)  # the same counter again
    assert not guard.check_and_advance(SUP, 9)  # going back
    assert guard.check_and_advance(SUP, 11)
    assert guard.check_and_advance(NET, 1)  # another originator has its own sequence
    assert guard.check_and_advance(SUP, 0) is False
    assert guard.last_counter(SUP) == 11 and guard.last_counter(NET) == 1
    assert guard.check_and_advance("90-B3-D5-1F-30-03-00-00", 0)  # 0 is a valid first counter


def test_counter_is_per_originator_not_per_target() -> None:
    guard = ReplayGuard()
    assert guard.admit(rid(5, target=ESME), 1) is ReplayVerdict.FRESH
    assert guard.admit(rid(5, target="00-DB-12-34-56-78-90-A1"), 1) is ReplayVerdict.REPLAYED


def test_verdict_codes() -> None:
    assert ReplayVerdict.FRESH.code is None
    assert ReplayVerdict.REPLAYED.code == "E1"
    assert ReplayVerdict.NO_PRE_COMMAND.code == "E12"


@pytest.mark.parametrize("signed_variant", [5, 6, 7])
def test_signed_pre_command_reuses_its_cv4_counter_once(signed_variant: int) -> None:
    guard = ReplayGuard()
    assert guard.admit(rid(100), 4) is ReplayVerdict.FRESH
    assert guard.admit(rid(101), 1) is ReplayVerdict.FRESH  # other traffic in between
    assert guard.admit(rid(100), signed_variant) is ReplayVerdict.FRESH
    assert guard.admit(rid(100), signed_variant) is ReplayVerdict.REPLAYED  # only once
    assert guard.admit(rid(100), 4) is ReplayVerdict.REPLAYED  # the CV 4 itself is spent


def test_signed_pre_command_needs_a_cv4() -> None:
    guard = ReplayGuard()
    assert guard.admit(rid(7), 1) is ReplayVerdict.FRESH
    assert guard.admit(rid(7), 5) is ReplayVerdict.REPLAYED  # a CV 1 leaves no allowance
    assert guard.admit(rid(8), 5) is ReplayVerdict.NO_PRE_COMMAND  # fresh counter, no CV 4
    assert guard.admit(rid(8), 1) is ReplayVerdict.FRESH  # ... and it did not spend 8
    assert guard.admit(rid(9, originator=NET), 4) is ReplayVerdict.FRESH
    # Another originator's CV 4 leaves nothing for SUP: 9 is fresh for SUP, so E12.
    assert guard.admit(rid(9), 5) is ReplayVerdict.NO_PRE_COMMAND


def test_open_pre_commands_are_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR", 2)
    guard = ReplayGuard()
    for counter in (1, 2, 3):
        assert guard.admit(rid(counter), 4) is ReplayVerdict.FRESH
    assert guard.admit(rid(1), 5) is ReplayVerdict.REPLAYED  # dropped
    assert guard.admit(rid(2), 5) is ReplayVerdict.FRESH
    assert guard.admit(rid(3), 6) is ReplayVerdict.FRESH


def test_batch_tracks_changes_and_can_be_returned() -> None:
    guard = ReplayGuard()
    guard.admit(rid(1), 4)
    guard.admit(rid(1), 5)
    batch, sequence = guard.take_batch()
    assert batch.advanced == {SUP: 1}
    assert (SUP, 1) in batch.consumed and not batch.granted
    assert sequence == guard.sequence == 3
    assert not guard.take_batch()[0]
    guard.admit(rid(2), 1)
    guard.return_batch(batch)  # a failed write comes back under the newer change
    merged, _ = guard.take_batch()
    assert merged.advanced == {SUP: 2} and (SUP, 1) in merged.consumed


# ---------------------------------------------------------------- the durable store


def test_store_round_trip_including_the_largest_counter(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path / "replay.sqlite")
    guard = store.load()
    guard.admit(rid(MAX_COUNTER - 1), 4)
    guard.admit(rid(0, originator=NET), 1)
    store.apply(guard.take_batch()[0])
    guard.admit(rid(MAX_COUNTER), 1)
    store.apply(guard.take_batch()[0])
    store.close()

    reopened = ReplayStore(tmp_path / "replay.sqlite")
    again = reopened.load()
    assert again.last_counter(SUP) == MAX_COUNTER
    assert again.last_counter(NET) == 0
    assert again.admit(rid(MAX_COUNTER - 1), 5) is ReplayVerdict.FRESH  # allowance survived
    reopened.close()


def test_store_applies_grants_before_consumptions(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path / "replay.sqlite")
    batch = ReplayBatch()
    batch.advanced[SUP] = 5
    batch.granted.add((SUP, 5))
    batch.consumed.add((SUP, 5))
    store.apply(batch)
    assert store.load().admit(rid(5), 5) is ReplayVerdict.REPLAYED
    store.close()


async def test_restart_survival(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    first = await DurableReplayGuard.open(path)
    assert first.admit(rid(41), 1) is ReplayVerdict.FRESH
    assert first.admit(rid(42), 4) is ReplayVerdict.FRESH
    assert first.admit(rid(3, originator=NET), 1) is ReplayVerdict.FRESH
    await first.flush()
    # No clean close: a second process opening the file sees what flush() made durable.
    second = await DurableReplayGuard.open(path)
    assert second.admit(rid(41), 1) is ReplayVerdict.REPLAYED
    assert second.admit(rid(3, originator=NET), 1) is ReplayVerdict.REPLAYED
    assert second.admit(rid(42), 5) is ReplayVerdict.FRESH  # the CV 4's allowance
    assert second.admit(rid(43), 1) is ReplayVerdict.FRESH
    await second.aclose()
    third = await DurableReplayGuard.open(path)
    assert third.admit(rid(42), 5) is ReplayVerdict.REPLAYED  # consumed before the restart
    assert third.admit(rid(43), 1) is ReplayVerdict.REPLAYED  # aclose flushed it
    await third.aclose()
    await first.aclose()


class CountingStore(ReplayStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0
        self.fail_next = False

    def apply(self, batch: ReplayBatch) -> None:
        self.writes += 1
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        super().apply(batch)


async def test_concurrent_flushes_share_writes(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "replay.sqlite")
    durable = DurableReplayGuard(store, store.load())
    requests = 200

    async def one(counter: int) -> None:
        originator = f"90-B3-D5-1F-30-01-{counter >> 8:02X}-{counter & 255:02X}"
        assert durable.admit(rid(counter, originator=originator), 1) is ReplayVerdict.FRESH
        await durable.flush()

    async with trio.open_nursery() as nursery:
        for counter in range(requests):
            nursery.start_soon(one, counter)
    assert store.writes < requests / 4  # group commit, not one fsync per request
    await durable.flush()  # nothing pending: no write
    writes = store.writes
    await durable.flush()
    assert store.writes == writes
    await durable.aclose()


async def test_a_failed_write_is_retried_by_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    store = CountingStore(path)
    durable = DurableReplayGuard(store, store.load())
    durable.admit(rid(1), 4)
    store.fail_next = True
    with pytest.raises(OSError, match="disk full"):
        await durable.flush()
    durable.admit(rid(2), 1)
    await durable.flush()
    await durable.aclose()
    reloaded = ReplayStore(path).load()
    assert reloaded.last_counter(SUP) == 2
    assert reloaded.admit(rid(1), 5) is ReplayVerdict.FRESH  # the grant of the failed batch
