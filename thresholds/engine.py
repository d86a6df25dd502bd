"""The anomaly-detection decision: plain functions over values (sans-IO).

Semantics, decided here once for every store:

* **Per User ID.** Counters are keyed by (User ID, SRV or "*", window). A party
  with two User IDs has two sets of counters; one User ID used in two roles has
  one set (¶134): the role never enters the key.
* **Breach edge.** A rule with limit L allows L requests per window. The
  request whose count (including itself) would be L + 1 is the first one held
  or warned about; the L-th is processed silently.
* **What counts.** Only requests that go on to be processed: allowed and
  warned ones, counted when decided. Quarantined requests are not counted; a
  released one is counted once, when it is released (`commit_release`), so it
  is never counted twice.
* **Precedence.** DCC-set quarantine > User quarantine > attribute limits >
  warning. The AD1 alert names the single highest breach (the DCC's own
  protection is what must be reported when both fire); among rules of one kind
  the first in config order wins. A quarantined request carries no warnings:
  it was not counted, so it crossed nothing.
* **Warnings.** Every processed request above a warning limit returns WARN
  with each exceeded warning rule. Which of them is a *crossing*, the one to
  log and count, needs memory of earlier crossings: `thresholds.crossings`
  marks `ThresholdHit.crossed` (once per crossing per window, defined there).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from thresholds.config import ANY, AttributeLimit, Breach, ThresholdConfig, ThresholdRule
from thresholds.windows import BucketWindow, ExactWindow, WindowCounter

# A data value of the request: one number, or several (e.g. a tariff's prices).
AttributeValue = float | Sequence[float]
NO_ATTRIBUTES: Final[Mapping[str, AttributeValue]] = {}


class Action(enum.Enum):
    ALLOW = "allow"
    WARN = "warn"
    QUARANTINE = "quarantine"


class ThresholdHit(msgspec.Struct, frozen=True):
    rule: ThresholdRule
    count: int  # the count including this request (saturates just above the limit)
    # Set by thresholds.crossings.CrossingLatch: this request is a crossing, to notify on.
    crossed: bool = False


class Decision(msgspec.Struct, frozen=True):
    action: Action
    breach: Breach | None = None
    rule: ThresholdRule | AttributeLimit | None = None
    count: int = 0  # for a threshold breach: the count this request would have made
    value: float | None = None  # for an attribute breach: the offending value
    warnings: tuple[ThresholdHit, ...] = ()


ALLOW: Final = Decision(Action.ALLOW)

_BREACH_OF_KIND: Final[dict[str, Breach]] = {
    "dcc_quarantine": "ADDCCThresholdBreach",
    "user_quarantine": "ADUserThresholdBreach",
}
_KIND_ORDER: Final = {"dcc_quarantine": 0, "user_quarantine": 1}


class CounterSpec(msgspec.Struct, frozen=True):
    """One counter of one User ID; `capacity` is the largest limit on it."""

    srv: str  # an SRV or "*"
    window_seconds: int
    capacity: int


class Plan(msgspec.Struct, frozen=True):
    """Everything one (User ID, SRV) pair is checked against, precompiled.

    Rules refer to counters by index into `counters`, so the hot path works on
    a list of ints instead of hashing keys.
    """

    counters: tuple[CounterSpec, ...]
    quarantine_rules: tuple[tuple[ThresholdRule, int], ...]  # DCC kind first
    warning_rules: tuple[tuple[ThresholdRule, int], ...]
    attribute_limits: tuple[AttributeLimit, ...]

    @property
    def empty(self) -> bool:
        return not (self.counters or self.attribute_limits)


def compile_plan(config: ThresholdConfig, user_id: str, srv: str) -> Plan:
    """The rules and counters that apply to `user_id` sending `srv`."""
    mine = [r for r in config.rules if r.user_id in (user_id, ANY)]
    # Capacity over all of this User ID's rules on the counter, not just this
    # SRV's, so the "*" counters every SRV shares are built the same way.
    capacity: dict[tuple[str, int], int] = {}
    for r in mine:
        key = (r.srv, r.window_seconds)
        capacity[key] = max(capacity.get(key, 0), r.limit)
    index: dict[tuple[str, int], int] = {}
    counters: list[CounterSpec] = []
    quarantine: list[tuple[ThresholdRule, int]] = []
    warning: list[tuple[ThresholdRule, int]] = []
    for r in mine:
        if r.srv not in (srv, ANY):
            continue
        key = (r.srv, r.window_seconds)
        if key not in index:
            index[key] = len(counters)
            counters.append(CounterSpec(r.srv, r.window_seconds, capacity[key]))
        (warning if r.kind == "warning" else quarantine).append((r, index[key]))
    quarantine.sort(key=lambda ri: _KIND_ORDER[ri[0].kind])  # stable: config order kept
    limits = tuple(
        a for a in config.attribute_limits if a.user_id in (user_id, ANY) and a.srv in (srv, ANY)
    )
    return Plan(tuple(counters), tuple(quarantine), tuple(warning), limits)


def counter_spec(
    config: ThresholdConfig, user_id: str, srv_key: str, window_seconds: int
) -> CounterSpec | None:
    """The counter (User ID, SRV or "*", window) under `config`, if any rule uses it."""
    limits = [
        r.limit
        for r in config.rules
        if r.user_id in (user_id, ANY) and r.srv == srv_key and r.window_seconds == window_seconds
    ]
    return CounterSpec(srv_key, window_seconds, max(limits)) if limits else None


def new_counter(spec: CounterSpec, config: ThresholdConfig) -> WindowCounter:
    """Exact timestamps while the limit is small enough to keep them, else buckets."""
    if spec.capacity <= config.exact_limit_max:
        return ExactWindow(spec.window_seconds, spec.capacity)
    return BucketWindow(spec.window_seconds, config.bucket_count)


def decide(
    counts_after: Sequence[int],
    plan: Plan,
    attributes: Mapping[str, AttributeValue] = NO_ATTRIBUTES,
) -> Decision:
    """The action for one request, given each counter's count including it.

    `counts_after[i]` belongs to `plan.counters[i]`.
    """
    for rule, i in plan.quarantine_rules:
        if counts_after[i] > rule.limit:
            return Decision(
                Action.QUARANTINE, _BREACH_OF_KIND[rule.kind], rule, count=counts_after[i]
            )
    if plan.attribute_limits and attributes:
        for limit in plan.attribute_limits:
            value = attributes.get(limit.attribute)
            if value is not None:
                bad = _out_of_bounds(limit, value)
                if bad is not None:
                    return Decision(Action.QUARANTINE, "ADAttributeLimitsBreach", limit, value=bad)
    hits: list[ThresholdHit] | None = None
    for rule, i in plan.warning_rules:  # a plain loop: no allocation while under the limit
        if counts_after[i] > rule.limit:
            if hits is None:
                hits = []
            hits.append(ThresholdHit(rule, counts_after[i]))
    if hits is not None:
        return Decision(Action.WARN, warnings=tuple(hits))
    return ALLOW


def _out_of_bounds(limit: AttributeLimit, value: AttributeValue) -> float | None:
    """The first value outside [min, max] (bounds inclusive), or None.

    Several values (a tariff's prices, given as their smallest and largest) are
    each judged against both bounds.
    """
    values: Sequence[float] = (value,) if isinstance(value, int | float) else value
    for v in values:
        if (limit.min is not None and v < limit.min) or (limit.max is not None and v > limit.max):
            return v
    return None
