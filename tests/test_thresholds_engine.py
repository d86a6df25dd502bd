"""The sans-IO threshold arithmetic: config, windows, plans and decisions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thresholds.config import (
    AttributeLimit,
    ThresholdConfig,
    ThresholdConfigError,
    ThresholdKind,
    ThresholdRule,
    decode_threshold_config,
)
from thresholds.engine import Action, Plan, compile_plan, decide
from thresholds.windows import BucketWindow, ExactWindow

A = "90-B3-D5-1F-30-01-00-00"
B = "90-B3-D5-1F-30-01-00-01"


def rule(
    kind: ThresholdKind, limit: int, *, srv: str = "*", window: int = 60, user: str = A
) -> ThresholdRule:
    return ThresholdRule(user_id=user, srv=srv, window_seconds=window, limit=limit, kind=kind)


# --- config -----------------------------------------------------------------

EXAMPLE_TOML = """
bucket_count = 60
[[rules]]
user_id = "*"
srv = "*"
window_seconds = 86400
limit = 100000
kind = "dcc_quarantine"
[[rules]]
user_id = "90-B3-D5-1F-30-01-00-00"
srv = "4.1.1"
window_seconds = 60
limit = 10
kind = "warning"
[[attribute_limits]]
srv = "2.2"
attribute = "emergency_credit_limit"
min = 1
max = 10000
"""


def test_config_decodes_from_toml() -> None:
    config = decode_threshold_config(EXAMPLE_TOML)
    assert config.bucket_count == 60
    assert [r.kind for r in config.rules] == ["dcc_quarantine", "warning"]
    assert config.attribute_limits[0].user_id == "*"
    assert config.attribute_limits[0].max == 10000


LOWER_CASE_RULE = """
[[rules]]
user_id = "90-b3-d5-1f-30-01-00-00"
window_seconds = 60
limit = 1
kind = "warning"
"""


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("surprise = 1", "surprise"),
        ('[[rules]]\nuser_id="*"\nwindow_seconds=0\nlimit=1\nkind="warning"', "window_seconds"),
        ('[[rules]]\nuser_id="*"\nwindow_seconds=60\nlimit=-1\nkind="warning"', "limit"),
        ('[[rules]]\nuser_id="*"\nwindow_seconds=60\nlimit=1\nkind="panic"', "kind"),
        # lower-case hex is refused: User IDs compare as canonical strings
        (LOWER_CASE_RULE, "user_id"),
        ('[[rules]]\nuser_id="*"\nsrv="four"\nwindow_seconds=60\nlimit=1\nkind="warning"', "srv"),
        ('[[attribute_limits]]\nsrv="2.2"\nattribute="price"', "needs min or max"),
        ('[[attribute_limits]]\nsrv="2.2"\nattribute="price"\nmin=5\nmax=1', "min > max"),
        # a misspelt name would bound nothing: refused, naming the known ones
        (
            '[[attribute_limits]]\nsrv="1.1.1"\nattribute="prise"\nmax=1',
            "unknown attribute 'prise'; known attributes: debt_adjustment, .*price",
        ),
        ('[[rules]]\nuser_id="*"\nwindow_seconds=60\nlimit=1\nkind="warning"\n' * 2, "duplicate"),
        ("rules = [", "not valid TOML"),
    ],
)
def test_config_refusals_name_the_problem(toml: str, fragment: str) -> None:
    with pytest.raises(ThresholdConfigError, match=fragment):
        decode_threshold_config(toml)


# --- decide -----------------------------------------------------------------


def plan_for(
    *rules: ThresholdRule, limits: tuple[AttributeLimit, ...] = (), srv: str = "4.1.1"
) -> Plan:
    return compile_plan(ThresholdConfig(rules=rules, attribute_limits=limits), A, srv)


@pytest.mark.parametrize(
    ("count_after", "action"),
    [(9, Action.ALLOW), (10, Action.ALLOW), (11, Action.QUARANTINE), (12, Action.QUARANTINE)],
)
def test_breach_edge_is_the_request_that_would_exceed(count_after: int, action: Action) -> None:
    plan = plan_for(rule("user_quarantine", 10))
    decision = decide([count_after], plan)
    assert decision.action is action
    if action is Action.QUARANTINE:
        assert decision.breach == "ADUserThresholdBreach"
        assert decision.count == count_after


def test_limit_zero_holds_everything() -> None:
    assert decide([1], plan_for(rule("dcc_quarantine", 0))).breach == "ADDCCThresholdBreach"


def test_precedence_dcc_then_user_then_attribute_then_warning() -> None:
    limits = (AttributeLimit(srv="4.1.1", attribute="debt_recovery_rate", max=5),)
    plan = plan_for(
        rule("warning", 1, window=60),
        rule("user_quarantine", 1, window=3600),
        rule("dcc_quarantine", 1, window=86400),
        limits=limits,
    )
    counters = {(c.srv, c.window_seconds): i for i, c in enumerate(plan.counters)}

    def counts(warn: int, user: int, dcc: int) -> list[int]:
        out = [0] * len(plan.counters)
        out[counters[("*", 60)]] = warn
        out[counters[("*", 3600)]] = user
        out[counters[("*", 86400)]] = dcc
        return out

    bad = {"debt_recovery_rate": 6}
    assert decide(counts(2, 2, 2), plan, bad).breach == "ADDCCThresholdBreach"
    assert decide(counts(2, 2, 1), plan, bad).breach == "ADUserThresholdBreach"
    attribute = decide(counts(2, 1, 1), plan, bad)
    assert attribute.breach == "ADAttributeLimitsBreach"
    assert attribute.value == 6
    assert attribute.warnings == ()  # held requests are not counted: they cross nothing
    warned = decide(counts(2, 1, 1), plan, {"debt_recovery_rate": 5})
    assert warned.action is Action.WARN
    assert warned.breach is None
    assert [h.rule.limit for h in warned.warnings] == [1]
    assert decide(counts(1, 1, 1), plan, {"debt_recovery_rate": 5}).action is Action.ALLOW


def test_warnings_list_every_exceeded_rule() -> None:
    plan = plan_for(rule("warning", 3, window=60), rule("warning", 5, window=3600))
    first, second = decide([4, 4], plan), decide([5, 6], plan)
    assert [h.rule.window_seconds for h in first.warnings] == [60]
    assert [(h.rule.window_seconds, h.count) for h in second.warnings] == [(60, 5), (3600, 6)]
    # Which hit is a crossing needs memory of earlier ones: thresholds.crossings decides.
    assert not any(h.crossed for h in (*first.warnings, *second.warnings))


def test_attribute_limits_are_inclusive_and_cover_every_value() -> None:
    limit = AttributeLimit(srv="2.2", attribute="emergency_credit_limit", min=1, max=100)
    plan = compile_plan(ThresholdConfig(attribute_limits=(limit,)), A, "2.2")
    assert decide([], plan, {"emergency_credit_limit": 1}).action is Action.ALLOW
    assert decide([], plan, {"emergency_credit_limit": 100}).action is Action.ALLOW
    assert decide([], plan, {"emergency_credit_limit": 100.01}).value == 100.01
    assert decide([], plan, {"emergency_credit_limit": 0}).breach == "ADAttributeLimitsBreach"
    assert decide([], plan, {"emergency_credit_limit": (5, 500, 7)}).value == 500
    assert decide([], plan, {"OtherValue": 10**9}).action is Action.ALLOW  # not limited
    assert decide([], plan).action is Action.ALLOW  # attribute absent
    assert compile_plan(ThresholdConfig(attribute_limits=(limit,)), A, "2.1").empty


def test_plan_takes_own_and_wildcard_rules_for_the_srv_only() -> None:
    config = ThresholdConfig(
        rules=(
            rule("warning", 5, srv="4.1.1"),
            rule("warning", 7, srv="1.1.1"),
            rule("dcc_quarantine", 1000, user="*"),
            rule("user_quarantine", 3, user=B),
        )
    )
    plan = compile_plan(config, A, "4.1.1")
    assert [(c.srv, c.window_seconds, c.capacity) for c in plan.counters] == [
        ("4.1.1", 60, 5),
        ("*", 60, 1000),
    ]
    assert [r.user_id for r, _ in plan.quarantine_rules] == ["*"]
    # DCC-set rules are checked first whatever the config order.
    assert [r.limit for r, _ in compile_plan(config, B, "4.1.1").quarantine_rules] == [1000, 3]


# --- windows against a brute-force reference --------------------------------

# Times on a 1/1024 s grid keep float arithmetic exact, so the reference and the
# counter agree on which side of a window edge a stamp falls.
steps = st.lists(st.integers(min_value=0, max_value=40 * 1024), min_size=1, max_size=200)


def times_from(gaps: list[int]) -> list[float]:
    out, t = [], 1_000_000.0
    for g in gaps:
        t += g / 1024
        out.append(t)
    return out


@settings(deadline=None, max_examples=200)
@given(gaps=steps, window=st.sampled_from([1, 7, 60, 300]), capacity=st.integers(0, 30))
def test_exact_window_matches_timestamp_list(gaps: list[int], window: int, capacity: int) -> None:
    counter = ExactWindow(window, capacity)
    seen: list[float] = []
    for now in times_from(gaps):
        truth = sum(1 for t in seen if now - window < t <= now)
        assert counter.count(now) == min(truth, capacity)
        counter.add(now)
        seen.append(now)


@settings(deadline=None, max_examples=200)
@given(gaps=steps, window=st.sampled_from([8, 60, 300]), buckets=st.sampled_from([4, 10, 60]))
def test_bucket_window_is_bounded_by_one_bucket(gaps: list[int], window: int, buckets: int) -> None:
    counter = BucketWindow(window, buckets)
    width = window / buckets
    seen: list[float] = []
    for now in times_from(gaps):
        approx = counter.count(now)
        exact = sum(1 for t in seen if now - window < t <= now)
        one_bucket_longer = sum(1 for t in seen if now - window - width < t <= now)
        assert exact <= approx <= one_bucket_longer
        counter.add(now)
        seen.append(now)


def test_clock_stepping_back_counts_in_the_newest_slot() -> None:
    exact, buckets = ExactWindow(60, 10), BucketWindow(60, 60)
    for c in (exact, buckets):
        c.add(1000.0)
        c.add(990.0)  # clock stepped back 10 s
        assert c.count(1000.0) == 2
        assert c.count(1059.5) == 2  # both live as if stamped at 1000
        assert c.count(1061.0) == 0


def test_summary_load_is_exact_for_known_buckets_and_conservative_for_the_rest() -> None:
    view = BucketWindow(60, 60)  # 1 s buckets, 61 slots
    head = 1000
    lo = head - view.slots + 1  # 940
    view.load_summary(head, lo, known=[2, 0, 3], total=10)  # 5 more somewhere after 942
    assert view.count(1000.5) == 10
    assert view.count(1001.0) == 8  # bucket 940 expired
    assert view.count(1003.0) == 5  # 941, 942 gone; the unknown 5 stay (put at 1000)
    assert view.exact_through(lo, 3) == 1003  # beyond it the unknown 5 might expire
    assert view.count(1060.0) == 5
    assert view.count(1061.0) == 0
    view.add_index(900, 7)  # outside the window: ignored
    view.add_index(1061, 1)
    assert view.count(1061.0) == 1
