"""Install and Leave (§1.1): the remedy window, coverage arrival, proactive limits."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.techspec.answers import RefusalCodes, no_wan_install_answer
from gateway.core.techspec.bodies import NoWanInstall
from gateway.core.techspec.coverage import (
    AddressKey,
    CoverageError,
    UprnKey,
    decode_coverage,
    fingerprint,
)
from gateway.core.techspec.install_leave import (
    AlertSent,
    Closed,
    CoverageArrived,
    InstallLeaveError,
    InstallLeavePolicy,
    Notified,
    apply,
    classify_no_wan_install,
    coverage_update,
    remedy_progress,
    report,
)

POLICY = InstallLeavePolicy()
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
HUB = "00-DB-12-34-56-78-90-A2"
NOTIFIED = dt.datetime(2018, 3, 1, 10, 0, tzinfo=dt.UTC)

NO_WAN_YET = b"""
[[premises]]
uprn = 123456789012
[[premises.regions]]
csp_region = "Central"
available = true
wan_technology = "2G/3G"
likelihood = "High"

[[premises]]
postcode = "M22 0RR"
address_identifier = "Threapwood Road"
[[premises.regions]]
csp_region = "North"
available = false
anticipated_date = 2019-06-30
wan_technology = "Long Range Radio"
likelihood = "Medium"

[[premises]]
postcode = "M22 0RR"
[[premises.regions]]
csp_region = "North"
available = false
anticipated_date = 2021-03-01
wan_technology = "Long Range Radio"
likelihood = "Low"
"""
WAN_ARRIVED = NO_WAN_YET.replace(
    b"available = false\nanticipated_date = 2019-06-30", b"available = true"
)


def reactive(at: dt.datetime = NOTIFIED) -> Notified:
    return Notified(
        user_id=SUPPLIER,
        hub_id=HUB,
        mpxn="1000999888",
        premises=AddressKey("M22 0RR", "Threapwood Road"),
        kind="reactive",
        at=at,
    )


def test_a_reactive_install_and_leave_tracked_to_its_90th_day_then_coverage_arrives() -> None:
    """¶23, SEC F7.18: the 90 days run from the DCC's notification; when the coverage
    database shows SM WAN, the supplier gets a DCC alert (¶24; licence 49.15)."""
    opened = apply(None, reactive(), POLICY)
    case = opened.case
    assert case.state == "awaiting_wan" and opened.alerts == ()
    assert case.remedy_deadline == NOTIFIED + dt.timedelta(days=90)

    def on_day(n: int) -> dt.datetime:  # any moment of the window's n-th day
        return NOTIFIED + dt.timedelta(days=n - 1, hours=13)

    rows = report([case], on_day(1))
    assert (rows[0].day, rows[0].days_remaining, rows[0].overdue) == (1, 89, False)
    rows = report([case], on_day(89))
    assert (rows[0].day, rows[0].days_remaining, rows[0].overdue) == (89, 1, False)
    rows = report([case], on_day(90))
    assert (rows[0].day, rows[0].days_remaining, rows[0].overdue) == (90, 0, False)
    rows = report([case], NOTIFIED + dt.timedelta(days=90))  # the deadline itself
    assert (rows[0].day, rows[0].days_remaining, rows[0].overdue) == (91, 0, True)

    # A coverage table without WAN there changes nothing; the update that shows it alerts.
    assert (
        coverage_update([case], decode_coverage(NO_WAN_YET, fmt="toml"), on_day(90), POLICY) == []
    )
    arrived_at = on_day(91)
    (moved,) = coverage_update([case], decode_coverage(WAN_ARRIVED, fmt="toml"), arrived_at, POLICY)
    assert moved.case.state == "wan_available" and moved.case.wan_available_at == arrived_at
    (alert,) = moved.alerts
    assert (alert.user_id, alert.hub_id, alert.available_at) == (SUPPLIER, HUB, arrived_at)
    assert report([moved.case], arrived_at)[0].alert_sent is False

    sent = apply(moved.case, AlertSent(at=arrived_at), POLICY)
    assert sent.case.alert_sent_at == arrived_at
    assert apply(sent.case, AlertSent(at=on_day(92)), POLICY).changed is False  # once only
    closed = apply(sent.case, Closed(reason="commissioned", at=on_day(95)), POLICY).case
    assert closed.state == "closed" and report([closed], on_day(95)) == []
    # An alert is owed once: a later coverage update does not reach a closed case.
    assert (
        coverage_update([closed], decode_coverage(WAN_ARRIVED, fmt="toml"), on_day(96), POLICY)
        == []
    )


def test_a_repeated_notification_does_not_restart_the_clock() -> None:
    case = apply(None, reactive(), POLICY).case
    again = apply(case, reactive(NOTIFIED + dt.timedelta(days=30)), POLICY)
    assert again.changed is False and again.case.remedy_deadline == case.remedy_deadline
    other = Notified(**{**_fields(reactive()), "user_id": "90-B3-D5-1F-30-03-00-00"})
    with pytest.raises(InstallLeaveError, match="already left without SM WAN"):
        apply(case, other, POLICY)
    # Once closed, the hub may be left without WAN again: a new case, a new window.
    closed = apply(case, Closed(reason="operator", at=NOTIFIED), POLICY).case
    reopened = apply(closed, reactive(NOTIFIED + dt.timedelta(days=200)), POLICY).case
    assert reopened.state == "awaiting_wan"
    assert reopened.remedy_deadline == NOTIFIED + dt.timedelta(days=290)


def _fields(event: Notified) -> dict[str, object]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


def test_steps_the_state_machine_does_not_allow() -> None:
    case = apply(None, reactive(), POLICY).case
    for event in (AlertSent(at=NOTIFIED), CoverageArrived(at=NOTIFIED)):
        with pytest.raises(InstallLeaveError):
            apply(None, event, POLICY)
    with pytest.raises(InstallLeaveError):
        apply(case, AlertSent(at=NOTIFIED), POLICY)  # no alert before coverage
    closed = apply(case, Closed(reason="hub_returned", at=NOTIFIED), POLICY).case
    for event in (
        CoverageArrived(at=NOTIFIED),
        AlertSent(at=NOTIFIED),
        Closed(reason="operator", at=NOTIFIED),
    ):
        with pytest.raises(InstallLeaveError):
            apply(closed, event, POLICY)


def test_proactive_install_and_leave_only_where_coverage_is_forecast_before_2021() -> None:
    """¶25, licence 49.8: proactive where SM WAN is forecast before the end of 2020."""
    table = decode_coverage(NO_WAN_YET, fmt="toml")
    street = table.lookup(AddressKey("m220rr", "  threapwood   ROAD "))
    elsewhere = table.lookup(AddressKey("M22 0RR", "Other Road"))  # the postcode entry
    covered = table.lookup(UprnKey(123456789012))
    assert street is not None and elsewhere is not None and covered is not None
    assert classify_no_wan_install(covered, POLICY).kind == "reactive"
    assert classify_no_wan_install(None, POLICY).kind == "reactive"  # nothing contradicts it
    verdict = classify_no_wan_install(street, POLICY)
    assert (verdict.kind, verdict.anticipated_date) == ("proactive", dt.date(2019, 6, 30))
    late = classify_no_wan_install(elsewhere, POLICY)
    assert late.kind is None and late.refusal is not None and "2021-01-01" in late.refusal
    # The cut-off is configuration: a later one admits the 2021 forecast.
    later = InstallLeavePolicy(proactive_forecast_before=dt.date(2022, 1, 1))
    assert classify_no_wan_install(elsewhere, later).kind == "proactive"


def test_a_proactive_case_has_no_remedy_window_but_is_alerted_too() -> None:
    event = Notified(
        **{**_fields(reactive()), "kind": "proactive", "anticipated_date": dt.date(2019, 6, 30)}
    )
    case = apply(None, event, POLICY).case
    assert case.remedy_deadline is None
    row = report([case], NOTIFIED + dt.timedelta(days=400))[0]
    assert (row.day, row.days_remaining, row.overdue) == (None, None, False)
    (moved,) = coverage_update([case], decode_coverage(WAN_ARRIVED, fmt="toml"), NOTIFIED, POLICY)
    assert len(moved.alerts) == 1


def test_the_report_lists_the_most_urgent_first() -> None:
    early = apply(None, reactive(NOTIFIED), POLICY).case
    late = apply(
        None,
        Notified(
            **{
                **_fields(reactive(NOTIFIED + dt.timedelta(days=60))),
                "hub_id": "00-DB-12-34-56-78-90-B2",
            }
        ),
        POLICY,
    ).case
    proactive = apply(
        None,
        Notified(
            **{**_fields(reactive()), "hub_id": "00-DB-12-34-56-78-90-C2", "kind": "proactive"}
        ),
        POLICY,
    ).case
    now = NOTIFIED + dt.timedelta(days=95)
    assert [r.hub_id for r in report([proactive, late, early], now)] == [
        early.hub_id,  # overdue
        late.hub_id,  # 55 days left
        proactive.hub_id,
    ]


@settings(deadline=None)
@given(
    seconds=st.integers(min_value=-86_400, max_value=400 * 86_400),
    window=st.integers(min_value=1, max_value=365),
)
def test_remedy_progress_arithmetic(seconds: int, window: int) -> None:
    now = NOTIFIED + dt.timedelta(seconds=seconds)
    progress = remedy_progress(NOTIFIED, now, window)
    elapsed_days = max(seconds, 0) // 86_400
    assert progress.day == elapsed_days + 1
    assert progress.overdue is (now >= NOTIFIED + dt.timedelta(days=window))
    assert progress.days_remaining == max(0, window - progress.day)
    assert (progress.days_remaining == 0) is (progress.day >= window)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            b"[[premises]]\nuprn = 1\npostcode = 'M22 0RR'\n"
            b"[[premises.regions]]\ncsp_region = 'North'\navailable = true\n"
            b"wan_technology = 'x'\nlikelihood = 'High'\n",
            "either uprn or postcode",
        ),
        (b"[[premises]]\nuprn = 1\nregions = []\n", "regions"),
        (
            b"[[premises]]\nuprn = 1\n[[premises.regions]]\ncsp_region = 'Mars'\navailable = true\n"
            b"wan_technology = 'x'\nlikelihood = 'High'\n",
            "csp_region",
        ),
        (NO_WAN_YET + NO_WAN_YET, "listed twice"),
        (b"premises = [", "not valid TOML"),
    ],
)
def test_a_bad_coverage_file_is_refused_with_a_reason(text: bytes, expected: str) -> None:
    with pytest.raises(CoverageError, match=expected):
        decode_coverage(text, fmt="toml")


def test_coverage_arrives_only_with_news_at_the_premises() -> None:
    """A reactive case starts where the database already showed SM WAN (¶23): loading
    that entry again is not the remedy; a changed entry showing SM WAN is (¶24)."""
    table = decode_coverage(NO_WAN_YET, fmt="toml")
    covered = table.lookup(UprnKey(123456789012))
    assert covered is not None and covered.available
    answer = no_wan_install_answer(
        SUPPLIER,
        NoWanInstall(hub_id=HUB, mpxn="1", install_type="CHF Install - no SM WAN"),
        UprnKey(123456789012),
        table,
        NOTIFIED,
        POLICY,
        RefusalCodes(),
        duis_version="5.1",
    )
    assert answer.event is not None and answer.event.kind == "reactive"
    case = apply(None, answer.event, POLICY).case
    assert case.coverage_seen == fingerprint(covered) and case.duis_version == "5.1"
    later = NOTIFIED + dt.timedelta(days=7)
    assert coverage_update([case], table, later, POLICY) == []  # the weekly feed, unchanged
    remedied = decode_coverage(
        NO_WAN_YET.replace(b'likelihood = "High"', b'likelihood = "Medium"', 1), fmt="toml"
    )
    (moved,) = coverage_update([case], remedied, later, POLICY)
    (alert,) = moved.alerts
    assert alert.duis_version == "5.1"  # built under the version the supplier notified in
