"""When a User Warning Threshold is reported: once per crossing per window.

A warning rule R (limit L, window W) and one User ID. A counted request at time
t *crosses* R when

1. its count, the counted requests in (t - W, t] including itself, exceeds L; and
2. no earlier request crossed R in (t - W, t].

So the first request over the limit is reported; while the User stays over it,
the next report comes no sooner than one window length after the last one (a
request that goes over again within W of a report is not reported). Under
sustained excess that is one warning per window, not one per request: traffic
that hovers at L + 1 in a sliding window would otherwise re-cross on almost
every request as the oldest one slides out.

Sans-IO: the latch holds the time of the last crossing per (User ID, rule) and
is fed the decisions and times the store already has. Memory is bounded by the
User IDs that reach thresholds (authenticated, so by the registry) times the rules.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from thresholds.config import ThresholdRule
from thresholds.engine import Action, Decision, ThresholdHit


class CrossingLatch:
    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[str, ThresholdRule], float] = {}

    def mark(self, user_id: str, decision: Decision, now_seconds: float) -> Decision:
        """The decision with `crossed` set on each warning this request crosses."""
        if decision.action is not Action.WARN:
            return decision
        hits: list[ThresholdHit] = []
        for hit in decision.warnings:
            key = (user_id, hit.rule)
            last = self._last.get(key)
            # A clock that stepped back (now < last) is inside the window: no report.
            if last is None or last <= now_seconds - hit.rule.window_seconds:
                self._last[key] = now_seconds
                hit = ThresholdHit(hit.rule, hit.count, crossed=True)
            hits.append(hit)
        return msgspec.structs.replace(decision, warnings=tuple(hits))

    def retain(self, rules: Collection[ThresholdRule]) -> None:
        """Forget crossings of rules no longer in force (after a reload)."""
        keep = set(rules)
        self._last = {key: at for key, at in self._last.items() if key[1] in keep}
