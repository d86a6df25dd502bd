"""The garbage collector for a long-running server: start-up objects frozen, pauses timed.

After start-up the heap holds tens of thousands of long-lived containers (catalogues,
XSDs, the estate, certificates, modules). CPython's full collections walk all of them
while every request waits, and the default first-generation threshold (700
allocations) runs a young collection every few requests. So, once the gateway is
ready: `gc.freeze()` moves everything alive into a permanent generation no collection
visits, and a higher threshold lets a request's short-lived cycles (lxml proxies,
exception tracebacks) go in fewer, larger young collections. Reference counting frees
almost everything else as before; cycles are still collected.

Every collection's pause is observed in `duisgw_gc_pause_seconds` by generation, so an
operator (and bench/) can see what the collector costs.
"""

from __future__ import annotations

import gc
import time
from typing import Final

import trio

from gateway.edge.metrics import Metrics

# Allocations minus deallocations before a young collection (CPython default 700); the
# two older generations keep their default multipliers.
GC_THRESHOLD_YOUNG: Final = 20_000
GC_THRESHOLD_OLDER: Final = (10, 10)


class GcPauses:
    """Times each collection (a gc.callbacks entry) into the metrics' histogram."""

    def __init__(self, metrics: Metrics) -> None:
        self._children = [metrics.gc_pause.labels(str(generation)) for generation in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._started)


class _Process:
    # Several gateways may serve in one process (tests): the first tunes, the last restores.
    holders = 0
    previous_threshold: tuple[int, int, int] = gc.get_threshold()


class GcTuning:
    """`hold` runs in the services nursery from readiness until shutdown."""

    def __init__(self, metrics: Metrics) -> None:
        self._pauses = GcPauses(metrics)
        self.tuned = False

    async def hold(self) -> None:
        """Freeze what start-up built, raise the young threshold, time every pause;
        undone when cancelled (shutdown)."""
        if self.tuned:
            return
        self.tuned = True
        gc.callbacks.append(self._pauses)
        _Process.holders += 1
        if _Process.holders == 1:
            _Process.previous_threshold = gc.get_threshold()
            gc.collect()  # start-up's garbage goes now, not into the permanent generation
            gc.freeze()
            gc.set_threshold(GC_THRESHOLD_YOUNG, *GC_THRESHOLD_OLDER)
        try:
            await trio.sleep_forever()
        finally:
            gc.callbacks.remove(self._pauses)
            _Process.holders -= 1
            if _Process.holders == 0:
                gc.unfreeze()
                gc.set_threshold(*_Process.previous_threshold)
