"""The in-process store: counting, sliding, per-User-ID separation (¶134)."""

from __future__ import annotations

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.stores.threshold_memory import MemoryThresholdStore
from thresholds.config import AttributeLimit, ThresholdConfig, ThresholdKind, ThresholdRule
from thresholds.engine import Action

# One party (say, a supplier that is also a network operator) with two User IDs,
# one for each role, and another User ID used for two roles.
PARTY_SUPPLIER_ID = "90-B3-D5-1F-30-01-00-00"
PARTY_NETWORK_ID = "90-B3-D5-1F-30-01-00-01"
TWO_ROLE_ID = "90-B3-D5-1F-30-02-00-00"


def rule(
    kind: ThresholdKind, limit: int, *, window: int = 60, srv: str = "*", user: str = "*"
) -> ThresholdRule:
    return ThresholdRule(user_id=user, srv=srv, window_seconds=window, limit=limit, kind=kind)


def store(*rules: ThresholdRule, limits: tuple[AttributeLimit, ...] = ()) -> MemoryThresholdStore:
    return MemoryThresholdStore(ThresholdConfig(rules=rules, attribute_limits=limits))


def actions(s: MemoryThresholdStore, user: str, srv: str, now: float, n: int) -> list[str]:
    return [s.check_and_count(user, srv, now).action.value for _ in range(n)]


async def test_below_at_and_above_the_limit(autojump_clock: trio.abc.Clock) -> None:
    s = store(rule("user_quarantine", 3))
    now = trio.current_time()
    assert actions(s, PARTY_SUPPLIER_ID, "4.1.1", now, 5) == [
        "allow",
        "allow",
        "allow",  # at the threshold: still processed
        "quarantine",  # would exceed: the first one held
        "quarantine",
    ]


async def test_window_slides(autojump_clock: trio.abc.Clock) -> None:
    s = store(rule("user_quarantine", 2, window=60))
    u, srv = PARTY_SUPPLIER_ID, "4.1.1"
    assert s.check_and_count(u, srv, trio.current_time()).action is Action.ALLOW  # t=0
    await trio.sleep(30)
    assert s.check_and_count(u, srv, trio.current_time()).action is Action.ALLOW  # t=30
    assert s.check_and_count(u, srv, trio.current_time()).action is Action.QUARANTINE
    await trio.sleep(29.5)  # t=59.5: both still in the window
    assert s.check_and_count(u, srv, trio.current_time()).action is Action.QUARANTINE
    await trio.sleep(0.5)  # t=60: the first has left (window is (now-60, now])
    assert s.check_and_count(u, srv, trio.current_time()).action is Action.ALLOW
    assert s.check_and_count(u, srv, trio.current_time()).action is Action.QUARANTINE


async def test_minute_hour_and_day_windows_together(autojump_clock: trio.abc.Clock) -> None:
    s = store(
        rule("user_quarantine", 3, window=60),
        rule("user_quarantine", 5, window=3600),
        rule("dcc_quarantine", 6, window=86400),
    )
    u = PARTY_SUPPLIER_ID
    held = []
    for _ in range(4):  # four minutes, three allowed in each until the hour says 5
        held.append(actions(s, u, "4.1.1", trio.current_time(), 4).count("quarantine"))
        await trio.sleep(60)
    assert held == [1, 2, 4, 4]
    await trio.sleep(3600)  # hour empty; the day has 5 of 6
    got = actions(s, u, "4.1.1", trio.current_time(), 3)
    assert got == ["allow", "quarantine", "quarantine"]
    assert s.check_and_count(u, "4.1.1", trio.current_time()).breach == "ADDCCThresholdBreach"


def test_per_srv_and_total_counters() -> None:
    s = store(rule("user_quarantine", 2, srv="4.1.1"), rule("user_quarantine", 3, srv="*"))
    u = PARTY_SUPPLIER_ID
    assert actions(s, u, "4.1.1", 0.0, 3) == ["allow", "allow", "quarantine"]
    assert actions(s, u, "1.1.1", 0.0, 2) == ["allow", "quarantine"]  # total now 3


def test_two_user_ids_of_one_party_are_counted_separately() -> None:
    s = store(rule("user_quarantine", 2, user="*"), rule("warning", 1, user=PARTY_NETWORK_ID))
    assert actions(s, PARTY_SUPPLIER_ID, "1.1.1", 0.0, 3) == ["allow", "allow", "quarantine"]
    # The same party's other User ID starts from zero, with its own extra rule.
    assert actions(s, PARTY_NETWORK_ID, "6.15.1", 0.0, 3) == ["allow", "warn", "quarantine"]


def test_one_user_id_in_two_roles_shares_one_set() -> None:
    s = store(rule("user_quarantine", 3, user=TWO_ROLE_ID))
    # 1.1.1 is a supplier SRV, 6.15.1 a network operator one: one set of counters.
    assert actions(s, TWO_ROLE_ID, "1.1.1", 0.0, 2) == ["allow", "allow"]
    assert actions(s, TWO_ROLE_ID, "6.15.1", 0.0, 2) == ["allow", "quarantine"]


def test_quarantined_requests_do_not_count_and_releases_count_once() -> None:
    s = store(rule("user_quarantine", 2), rule("warning", 100, window=3600))
    u = PARTY_SUPPLIER_ID
    assert actions(s, u, "4.1.1", 0.0, 5).count("allow") == 2
    # At t=61 the two processed ones have left: held ones never entered.
    assert actions(s, u, "4.1.1", 61.0, 1) == ["allow"]
    s.commit_release(u, "4.1.1", 62.0)  # one of the held ones, released by the User
    assert actions(s, u, "4.1.1", 62.0, 1) == ["quarantine"]  # 1 + 1 released = 2
    hour = s.check_and_count(u, "4.1.1", 3000.0)
    assert hour.action is Action.ALLOW  # hour count: 2 + 1 + 1 + this one, no double count
    assert s.check_and_count(u, "4.1.1", 3000.0).action is Action.ALLOW


def test_attribute_limit_quarantines_without_counting() -> None:
    limits = (AttributeLimit(srv="2.2", attribute="emergency_credit_limit", max=5000),)
    s = store(rule("user_quarantine", 1), limits=limits)
    u = PARTY_SUPPLIER_ID
    big = s.check_and_count(u, "2.2", 0.0, {"emergency_credit_limit": 5001})
    assert (big.action, big.breach) == (Action.QUARANTINE, "ADAttributeLimitsBreach")
    assert s.check_and_count(u, "2.2", 0.0, {"emergency_credit_limit": 5000}).action is Action.ALLOW


def test_user_without_rules_is_allowed_cheaply() -> None:
    s = store(rule("user_quarantine", 0, user=PARTY_SUPPLIER_ID))
    assert actions(s, PARTY_NETWORK_ID, "4.1.1", 0.0, 3) == ["allow"] * 3


def test_large_limits_use_buckets_and_still_hold() -> None:
    s = MemoryThresholdStore(
        ThresholdConfig(rules=(rule("user_quarantine", 50, window=60),), exact_limit_max=10)
    )
    got = actions(s, PARTY_SUPPLIER_ID, "4.1.1", 5.0, 51)
    assert got.count("allow") == 50 and got[-1] == "quarantine"


def test_reload_keeps_counts_where_it_can() -> None:
    s = store(rule("user_quarantine", 3))
    u = PARTY_SUPPLIER_ID
    actions(s, u, "4.1.1", 0.0, 3)
    s.reload(ThresholdConfig(rules=(rule("user_quarantine", 4),)))
    assert actions(s, u, "4.1.1", 1.0, 2) == ["allow", "quarantine"]
    s.reload(ThresholdConfig(rules=(rule("user_quarantine", 4, window=3600),)))
    assert actions(s, u, "4.1.1", 2.0, 1) == ["allow"]  # a new window starts from zero


@settings(deadline=None, max_examples=150)
@given(
    gaps=st.lists(st.integers(0, 20), min_size=1, max_size=150),
    limit=st.integers(0, 8),
    window=st.sampled_from([5, 30]),
)
def test_store_matches_reference_model(gaps: list[int], limit: int, window: int) -> None:
    """Reference: a list of processed timestamps; held requests never enter it."""
    s = store(rule("user_quarantine", limit, window=window))
    processed: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap / 4
        in_window = sum(1 for t in processed if now - window < t <= now)
        expected = "allow" if in_window + 1 <= limit else "quarantine"
        assert s.check_and_count(PARTY_SUPPLIER_ID, "4.1.1", now).action.value == expected
        if expected == "allow":
            processed.append(now)
