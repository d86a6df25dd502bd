"""In-process threshold store: the default, for one gateway process.

Synchronous on purpose: a check is a few dict lookups and deque operations, so
a trio pipeline stage calls it inline with no await and no lock (trio runs one
task at a time, and nothing here yields).

Counts are exact (windows.ExactWindow) for counters whose largest limit is at
most `exact_limit_max`, and bucketed (conservative by at most one bucket) above.
Memory grows with the User IDs seen; those reach this stage only after
authentication, so they are bounded by the registry.
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
from thresholds.windows import BucketWindow, ExactWindow, WindowCounter


class _Bound:
    """A plan with its live counters, cached per (User ID, SRV)."""

    __slots__ = ("counters", "empty", "plan")

    def __init__(self, plan: Plan, counters: list[WindowCounter]) -> None:
        self.plan = plan
        self.counters = counters
        self.empty = plan.empty


class MemoryThresholdStore:
    def __init__(self, config: ThresholdConfig) -> None:
        self._config = config
        self._bound: dict[tuple[str, str], _Bound] = {}
        self._counters: dict[tuple[str, str, int], WindowCounter] = {}
        self._crossings = CrossingLatch()

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

    def reload(self, config: ThresholdConfig) -> None:
        """Apply new rules, keeping counts where the counter's shape allows it.

        An exact counter whose limit changed keeps its newest stamps; a counter
        that switches between exact and bucketed starts again from zero (its
        history cannot be converted faithfully).
        """
        old = self._counters
        self._config = config
        self._crossings.retain(config.rules)
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
        for spec in plan.counters:
            key = (user_id, spec.srv, spec.window_seconds)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = new_counter(spec, self._config)
            counters.append(counter)
        bound = self._bound[(user_id, srv)] = _Bound(plan, counters)
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
