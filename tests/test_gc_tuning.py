"""The collector while serving: start-up frozen, a higher young threshold, pauses counted."""

from __future__ import annotations

import gc

import trio

from gateway.edge.gc_tuning import GC_THRESHOLD_YOUNG, GcTuning
from gateway.edge.metrics import Metrics


def _pauses(metrics: Metrics, generation: str) -> float:
    value = metrics.registry.get_sample_value(
        "duisgw_gc_pause_seconds_count", {"generation": generation}
    )
    return value or 0.0


async def test_held_while_serving_then_restored() -> None:
    before = gc.get_threshold()
    metrics = Metrics()
    tuning = GcTuning(metrics)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tuning.hold)
        nursery.start_soon(tuning.hold)  # a second readiness changes nothing
        await trio.testing.wait_all_tasks_blocked()
        assert tuning.tuned
        assert gc.get_threshold()[0] == GC_THRESHOLD_YOUNG
        assert gc.get_freeze_count() > 0
        gc.collect(0)
        gc.collect(2)
        assert _pauses(metrics, "0") >= 1
        assert _pauses(metrics, "2") >= 1
        nursery.cancel_scope.cancel()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    counted = _pauses(metrics, "0")
    gc.collect(0)
    assert _pauses(metrics, "0") == counted  # no longer timed


async def test_two_gateways_in_one_process_restore_once_both_stop() -> None:
    before = gc.get_threshold()
    first, second = GcTuning(Metrics()), GcTuning(Metrics())
    async with trio.open_nursery() as outer:
        outer.start_soon(first.hold)
        async with trio.open_nursery() as inner:
            inner.start_soon(second.hold)
            await trio.testing.wait_all_tasks_blocked()
            inner.cancel_scope.cancel()
        assert gc.get_threshold()[0] == GC_THRESHOLD_YOUNG  # the first still serves
        outer.cancel_scope.cancel()
    assert gc.get_threshold() == before
