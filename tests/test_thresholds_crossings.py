"""Warnings are reported once per crossing per window; attribute bounds judge every value.

"Crossing" is defined in thresholds/crossings.py: a counted request whose count
exceeds the warning limit, with no crossing of that rule for that User ID in the
window ending at it. The hypothesis test checks the store against that
definition computed by brute force over every request seen.
"""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.ingest import parse_xml
from gateway.stores.threshold_memory import MemoryThresholdStore
from mmc.codec import extract_body_facts
from tests.harness import default_config, running_gateway
from thresholds.config import (
    AttributeLimit,
    ThresholdConfig,
    ThresholdKind,
    ThresholdRule,
    decode_threshold_config,
)
from thresholds.engine import Action, compile_plan, decide

USER = "90-B3-D5-1F-30-01-00-00"
OTHER = "90-B3-D5-1F-30-03-00-00"
INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
TARIFF = "duis/samples/requests/ECS01a_1.1.1_IMMEDIATE_BLOCK_SUCCESS_REQUEST_DUIS.XML"


def rule(kind: ThresholdKind, limit: int, window: int, srv: str = "*") -> ThresholdRule:
    return ThresholdRule(user_id="*", srv=srv, window_seconds=window, limit=limit, kind=kind)


def crossed(store: MemoryThresholdStore, user: str, now: float) -> list[int]:
    """The limits of the warning rules this request crosses."""
    decision = store.check_and_count(user, "4.1.1", now)
    return [h.rule.limit for h in decision.warnings if h.crossed]


def test_a_warning_is_reported_once_not_for_every_request_above_the_limit() -> None:
    store = MemoryThresholdStore(ThresholdConfig(rules=(rule("warning", 1, 3600),)))
    got = [crossed(store, USER, float(t)) for t in range(6)]
    assert got == [[], [1], [], [], [], []]  # the finding: "crossed ... count=2" four times
    assert crossed(store, OTHER, 6.0) == []  # per User ID: the other one is under its limit
    assert crossed(store, OTHER, 7.0) == [1]
    # Still over the limit a window after the report (made at t = 1): reported again, once.
    assert [crossed(store, USER, t) for t in (3600.5, 3601.0, 3601.5)] == [[], [1], []]


def test_two_rules_cross_independently() -> None:
    rules = (rule("warning", 2, 60), rule("warning", 4, 3600))
    store = MemoryThresholdStore(ThresholdConfig(rules=rules))
    got = [crossed(store, USER, float(t)) for t in range(6)]
    assert got == [[], [], [2], [], [4], []]


@settings(deadline=None, max_examples=200)
@given(
    gaps=st.lists(st.integers(0, 40), min_size=1, max_size=120),
    limit=st.integers(0, 6),
    window=st.sampled_from([5, 20]),
    quarantine_limit=st.none() | st.integers(0, 10),
)
def test_crossings_match_the_definition(
    gaps: list[int], limit: int, window: int, quarantine_limit: int | None
) -> None:
    """Brute force: every counted stamp and every crossing kept, windows recounted."""
    rules = [rule("warning", limit, window)]
    if quarantine_limit is not None:  # held requests are not counted and cross nothing
        rules.append(rule("user_quarantine", quarantine_limit, window * 3))
    store = MemoryThresholdStore(ThresholdConfig(rules=tuple(rules)))
    counted: list[float] = []
    crossings: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap / 4
        decision = store.check_and_count(USER, "4.1.1", now)
        long_window = sum(1 for t in counted if now - window * 3 < t <= now)
        held = quarantine_limit is not None and long_window + 1 > quarantine_limit
        assert (decision.action is Action.QUARANTINE) == held
        if held:
            continue
        counted.append(now)
        count = sum(1 for t in counted if now - window < t <= now)
        recent = any(now - window < t <= now for t in crossings)
        expected = count > limit and not recent
        if expected:
            crossings.append(now)
        assert [h.crossed for h in decision.warnings] == ([expected] if count > limit else [])


def test_reload_keeps_the_crossings_of_rules_still_in_force() -> None:
    kept, dropped = rule("warning", 1, 3600), rule("warning", 1, 60)
    store = MemoryThresholdStore(ThresholdConfig(rules=(kept, dropped)))
    assert [crossed(store, USER, t) for t in (0.0, 1.0)] == [[], [1, 1]]
    store.reload(ThresholdConfig(rules=(kept, dropped)))
    assert crossed(store, USER, 2.0) == []  # same rules: already reported in this window
    store.reload(ThresholdConfig(rules=(kept,)))
    store.reload(ThresholdConfig(rules=(kept, dropped)))
    # The re-added rule starts afresh: its count from zero, no crossing remembered.
    assert [crossed(store, USER, t) for t in (3.0, 4.0)] == [[], [1]]


async def test_gateway_logs_and_counts_one_warning_per_crossing(
    tmp_path: Path, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nuser_id = "*"\nsrv = "8.2"\nwindow_seconds = 3600\nlimit = 1\n'
        'kind = "warning"\n'
    )
    config = default_config(tmp_path)
    config = msgspec.structs.replace(
        config, thresholds=msgspec.structs.replace(config.thresholds, rules_file=str(rules))
    )
    xml = (shared_dir / INVENTORY).read_bytes()
    with caplog.at_level(logging.WARNING, logger="duisgw.thresholds"):
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            for _ in range(5):
                assert (await gw.send(xml)).status_code == 200
            metrics = (await gw.client.get(gw.admin_url + "/metrics")).text
    assert "duisgw_threshold_warnings_total 1.0" in metrics
    lines = [r.getMessage() for r in caplog.records if "Warning Threshold crossed" in r.message]
    assert len(lines) == 1 and "count=2" in lines[0]


def test_attribute_min_is_judged_on_every_value_of_a_real_tariff(shared_dir: Path) -> None:
    """ECS01a carries block prices 1361, 2289 and 5566: a min of 2000 holds it."""
    root = parse_xml((shared_dir / TARIFF).read_bytes())
    body = next(child for child in root[1] if isinstance(child.tag, str))
    facts = extract_body_facts(body)
    assert facts.attributes["price"] == (1361.0, 5566.0)

    def judged(**bounds: float) -> tuple[Action, float | None]:
        limit = AttributeLimit(srv="1.1.1", attribute="price", **bounds)
        plan = compile_plan(ThresholdConfig(attribute_limits=(limit,)), USER, "1.1.1")
        decision = decide([], plan, facts.attributes)
        return decision.action, decision.value

    assert judged(min=2000) == (Action.QUARANTINE, 1361.0)
    assert judged(max=5000) == (Action.QUARANTINE, 5566.0)
    assert judged(min=1361, max=5566) == (Action.ALLOW, None)


def test_known_attribute_names_decode() -> None:
    config = decode_threshold_config(
        '[[attribute_limits]]\nsrv = "1.1.1"\nattribute = "price"\nmin = 2000\n'
    )
    assert config.attribute_limits[0].min == 2000
