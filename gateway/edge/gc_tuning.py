"""The garbage collector for a long-running server: start-up objects frozen, pauses timed.

After start-up the heap holds tens of thousands of long-lived containers (catalogues,
XSDs, the estate, certificates, modules). CPython's full collections walk all of them
while every request waits, and the default first-generation threshold (700
allocations) runs a young collection every few requests. So, once the gateway is
ready: `gc.freeze()` moves everything alive into a permanent generation no collection
visits, a higher young threshold lets a request's short-lived cycles (lxml proxies,
exception tracebacks) go in fewer young collections, and full collections come rarer.
Reference counting frees almost everything else as before; cycles are still collected.

Every collection's pause is observed in `duisgw_gc_pause_seconds` by generation, so an
operator (and bench/) can see what the collector costs.
"""

from __future__ import annotations

import gc
import time
from typing import Final

import trio

from gateway.edge.metrics import Metrics

# Allocations minus deallocations before a young collection (CPython default 700): fewer
# young collections, each still small. Full collections ten times rarer than CPython's
# default (100 middle ones, not 10): with a crowd of a thousand open connections alive
# (bench.soak), each full one walks all of them and stalled the loop 90-180 ms (py-spy
# timeline). Measured (bench.soak --seconds 40, one run each): p99 beside the crowd over
# p99 alone 7.96-8.90 with (20,000; 10, 10), 10.2 with CPython's (700; 10, 10), 3.22-3.77
# with (2,000 or 5,000; 10, 100); bench.compare's closed loop no slower.
GC_THRESHOLD_YOUNG: Final = 2_000
GC_THRESHOLD_OLDER: Final = (10, 100)


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
