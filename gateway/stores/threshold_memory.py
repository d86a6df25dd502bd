"""In-process threshold store: the default, for one gateway process.

Synchronous on purpose: a check is a few dict lookups and deque operations, so
a trio pipeline stage calls it inline with no await and no lock (trio runs one
task at a time, and nothing here yields).

Counts are exact (windows.ExactWindow) for counters whose largest limit is at
most `exact_limit_max`, and bucketed (conservative by at most one bucket) above.
Memory grows with the User IDs seen; those reach this stage only after
authentication, so they are bounded by the registry.

Counts can outlive the process: the store remembers which counters changed
(`changed_counters`, for a periodic and a shutdown snapshot) and takes saved
counts back (`restore`), both as `thresholds.snapshot` values.
"""

from __future__ import annotations

from collections.abc import Mapping

from thresholds.config import ThresholdConfig
from thresholds.crossings import CrossingLatch
from thresholds.engine import (
    ALLOW,
    NO_ATTRIBUTES,
    Action,
    AttributeValue,
    CounterSpec,
    Decision,
    Plan,
    compile_plan,
    counter_spec,
    decide,
    new_counter,
)
from thresholds.snapshot import CounterKey, CounterState, counter_state, restored_counter
from thresholds.windows import BucketWindow, ExactWindow, WindowCounter


class _Bound:
    """A plan with its live counters, cached per (User ID, SRV)."""

    __slots__ = ("counters", "empty", "keys", "plan")

    def __init__(self, plan: Plan, counters: list[WindowCounter], keys: list[CounterKey]) -> None:
        self.plan = plan
        self.counters = counters
        self.keys = keys
        self.empty = plan.empty


class MemoryThresholdStore:
    def __init__(self, config: ThresholdConfig) -> None:
        self._config = config
        self._bound: dict[tuple[str, str], _Bound] = {}
        self._counters: dict[CounterKey, WindowCounter] = {}
        self._crossings = CrossingLatch()
        self._changed: set[CounterKey] = set()  # since the last changed_counters()

    @property
    def config(self) -> ThresholdConfig:
        return self._config

    def check_and_count(
        self,
        user_id: str,
        srv: str,
        now_seconds: float,
        attributes: Mapping[str, AttributeValue] = NO_ATTRIBUTES,
    ) -> Decision:
        """Decide one request and, unless it is quarantined, count it at `now_seconds`."""
        bound = self._bound.get((user_id, srv))
        if bound is None:
            bound = self._bind(user_id, srv)
        if bound.empty:
            return ALLOW
        counters = bound.counters
        decision = decide([c.count(now_seconds) + 1 for c in counters], bound.plan, attributes)
        if decision.action is not Action.QUARANTINE:
            for c in counters:
                c.add(now_seconds)
            self._changed.update(bound.keys)
            if decision.action is Action.WARN:
                decision = self._crossings.mark(user_id, decision, now_seconds)
        return decision

    def commit_release(self, user_id: str, srv: str, now_seconds: float) -> None:
        """Count a released quarantined request, once, at its release time.

        No decision: the User has told the DCC to process it.
        """
        bound = self._bound.get((user_id, srv))
        if bound is None:
            bound = self._bind(user_id, srv)
        for c in bound.counters:
            c.add(now_seconds)
        self._changed.update(bound.keys)

    def changed_counters(
        self, now_seconds: float
    ) -> tuple[dict[CounterKey, CounterState], list[CounterKey]]:
        """Counters changed since the last call: their counts, and those now counting
        nothing (or dropped by a reload), for a snapshot to write and to delete."""
        changed, self._changed = self._changed, set()
        live: dict[CounterKey, CounterState] = {}
        gone: list[CounterKey] = []
        for key in changed:
            counter = self._counters.get(key)
            state = None if counter is None else counter_state(counter, now_seconds)
            if state is None:
                gone.append(key)
            else:
                live[key] = state
        return live, gone

    def restore(self, saved: Mapping[CounterKey, CounterState]) -> int:
        """Take back saved counts (at start, before any request); returns how many fit.

        Counters no rule uses any more, or whose shape changed, are left out; all
        are marked changed, so the next snapshot rewrites or drops them.
        """
        restored = 0
        for key, state in saved.items():
            self._changed.add(key)
            spec = counter_spec(self._config, *key)
            counter = None if spec is None else restored_counter(state, spec, self._config)
            if counter is not None:
                self._counters[key] = counter
                restored += 1
        self._bound = {}
        return restored

    def reload(self, config: ThresholdConfig) -> None:
        """Apply new rules, keeping counts where the counter's shape allows it.

        An exact counter whose limit changed keeps its newest stamps; a counter
        that switches between exact and bucketed starts again from zero (its
        history cannot be converted faithfully).
        """
        old = self._counters
        self._config = config
        self._crossings.retain(config.rules)
        self._changed.update(old)  # kept ones are rewritten, dropped ones deleted
        self._bound = {}
        self._counters = {}
        for (user_id, srv_key, window), counter in old.items():
            spec = counter_spec(config, user_id, srv_key, window)
            kept = None if spec is None else _carry_over(counter, spec, config)
            if kept is not None:
                self._counters[(user_id, srv_key, window)] = kept

    def _bind(self, user_id: str, srv: str) -> _Bound:
        plan = compile_plan(self._config, user_id, srv)
        counters: list[WindowCounter] = []
        keys: list[CounterKey] = []
        for spec in plan.counters:
            key = (user_id, spec.srv, spec.window_seconds)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = new_counter(spec, self._config)
            counters.append(counter)
            keys.append(key)
        bound = self._bound[(user_id, srv)] = _Bound(plan, counters, keys)
        return bound


def _carry_over(
    counter: WindowCounter, spec: CounterSpec, config: ThresholdConfig
) -> WindowCounter | None:
    fresh = new_counter(spec, config)
    if isinstance(counter, ExactWindow) and isinstance(fresh, ExactWindow):
        return counter if counter.capacity == spec.capacity else counter.resized(spec.capacity)
    if isinstance(counter, BucketWindow) and isinstance(fresh, BucketWindow):
        return counter if counter.slots == fresh.slots else None
    return None
