"""The version rules walked through the consultation's own examples (§1.2, §3.6)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.techspec.rules import (
    check_auxiliary,
    check_installation,
    check_maintenance,
    check_pre_notification,
    check_system_replacement,
)
from gateway.core.techspec.versions import Period, gb_date, parse_ts_version
from tests.techspec_data import consultation, day, device, extended

TABLES = consultation()


def reasons(decision: tuple[object, ...]) -> list[str]:
    return [r.reason for r in decision]  # type: ignore[attr-defined]


def test_smets_1_1_installable_until_12_12_17_and_maintainable_after() -> None:
    """¶96, footnote 18: SMETS v1.1 installs count until its end date, not after; existing
    SMETS v1.1 installations may still be maintained to it (¶31, ¶96)."""
    esme = device("ESME", "SMETS v1.1")
    assert check_installation(TABLES, esme, day("18/12/12")) == ()
    assert check_installation(TABLES, esme, day("12/12/17")) == ()
    refused = check_installation(TABLES, esme, day("13/12/17"))
    assert reasons(refused) == ["no_installation_validity"]
    assert "¶114" in refused[0].paragraph
    assert check_installation(TABLES, esme, day("17/12/12")) != ()
    for later in ("13/12/17", "01/01/20", "31/12/30"):
        assert check_maintenance(TABLES, esme, day(later), previous=esme, premises=[]) == ()


def test_smets_2_0_with_gbcs_1_0_from_30_09_16() -> None:
    """Example Table 1 and 2: SMETS v2.0 and CHTS v1.0 with GBCS v1.0 from 30/09/16 (¶117)."""
    esme = device("ESME", "SMETS v2.0", "1.0")
    hub = device("CHF", "CHTS v1.0", "1.0")
    for d in (esme, hub):
        assert check_installation(TABLES, d, day("30/09/16")) == ()
        assert reasons(check_installation(TABLES, d, day("29/09/16"))) == [
            "no_installation_validity",
            "gbcs_not_applicable",
        ]
    # A GBCS version not relevant to the specification is refused (¶117).
    odd = device("ESME", "SMETS v2.0", "2.0")
    assert reasons(check_installation(TABLES, odd, day("01/10/16"))) == ["gbcs_not_applicable"]
    # ¶122: SMETS v2.0 with GBCS v1.0 works with CHTS v1.0 with GBCS v1.0.
    assert TABLES.compatible(esme.conformance, hub.conformance)


def test_a_downgrade_is_refused_even_to_a_version_still_installable() -> None:
    """¶101, ¶127, §1.2 ¶32: no backwards step, even to a version still valid for installs."""
    installed = device("ESME", "SMETS v2.0", "1.0", "00-DB-12-34-56-78-90-A0")
    older = device("ESME", "SMETS v1.1", device_id="00-DB-12-34-56-78-90-A0")
    on = day("01/06/17")  # SMETS v1.1 still has its IVP
    assert check_installation(TABLES, older, on) == ()
    refused = check_maintenance(TABLES, older, on, previous=installed, premises=[])
    assert reasons(refused)[0] == "backwards_step"
    assert "¶127" in refused[0].paragraph
    # The same version, or a later one, is not a backwards step.
    assert check_maintenance(TABLES, installed, on, previous=installed, premises=[]) == ()


def test_an_incompatible_replacement_is_refused() -> None:
    """¶126: a replacement ESME must be compatible with the other devices in the premises.
    SMETS v3.0 (GBCS v2.0) is a later version but works only with CHTS v2.0 hubs."""
    tables = extended()
    on = day("01/02/20")
    hub = device("CHF", "CHTS v1.0", "1.0", "00-DB-12-34-56-78-90-A2")
    gsme = device("GSME", "SMETS v2.1", "1.0", "00-DB-12-34-56-78-90-A1")
    old = device("ESME", "SMETS v2.1", "1.0")
    newer = device("ESME", "SMETS v3.0", "2.0")
    refused = check_maintenance(tables, newer, on, previous=old, premises=[hub, gsme])
    assert reasons(refused) == ["incompatible", "incompatible"]
    assert "00-DB-12-34-56-78-90-A2" in refused[0].detail
    # With a CHTS v2.0 hub the same upgrade is fine; SMETS v2.1 and v3.0 meters have no
    # hub in common, so the gas meter still blocks it.
    hub2 = device("CHF", "CHTS v2.0", "2.0")
    assert reasons(check_maintenance(tables, newer, on, previous=old, premises=[hub2])) == []
    assert reasons(check_maintenance(tables, newer, on, previous=old, premises=[hub2, gsme])) == [
        "incompatible"
    ]


def test_whole_system_replacement_needs_a_current_ivp() -> None:
    """§1.2 ¶33: after the SMETS1 end date a SMETS1 system cannot replace another."""
    after = day("01/01/18")
    smets1 = [device("ESME", "SMETS v1.1")]
    refused = check_system_replacement(TABLES, smets1, after)
    assert reasons(refused) == ["no_installation_validity"]
    assert refused[0].paragraph == "¶33"
    smets2 = [device("ESME", "SMETS v2.0", "1.0"), device("CHF", "CHTS v1.0", "1.0")]
    assert check_system_replacement(TABLES, smets2, after) == ()
    # A SMETS1 meter with a CHTS hub is not a compatible system (¶126).
    mixed = [device("ESME", "SMETS v1.1"), device("CHF", "CHTS v1.0", "1.0")]
    assert "incompatible" in reasons(check_system_replacement(TABLES, mixed, day("01/06/17")))


def test_auxiliary_devices_need_only_a_current_mvp() -> None:
    """¶125: a PPMID installed after SMETS v2.0's IVP ended is still allowed."""
    tables = extended()  # SMETS v2.0 IVP ends 30/06/18, MVP 30/06/19
    on = day("01/01/19")
    assert reasons(check_installation(tables, device("ESME", "SMETS v2.0", "1.0"), on)) == [
        "no_installation_validity"
    ]
    assert check_installation(tables, device("PPMID", "SMETS v2.0", "1.0"), on) == ()
    assert reasons(
        check_auxiliary(tables, device("IHD", "SMETS v2.0", "1.0"), day("01/07/19"))
    ) == ["no_maintenance_validity"]


def test_a_hub_is_not_held_to_ihd_compatibility() -> None:
    """¶126: the DCC is not required to keep hubs compatible with IHDs."""
    tables = extended()
    on = day("01/02/20")
    hub = device("CHF", "CHTS v2.0", "2.0")
    ihd = device("IHD", "SMETS v2.1", "1.0")
    ppmid = device("PPMID", "SMETS v2.1", "1.0")
    old_hub = device("CHF", "CHTS v1.0", "1.0")
    assert check_maintenance(tables, hub, on, previous=old_hub, premises=[ihd]) == ()
    assert reasons(check_maintenance(tables, hub, on, previous=old_hub, premises=[ppmid])) == [
        "incompatible"
    ]


def test_wrong_or_unknown_specification() -> None:
    assert reasons(check_installation(TABLES, device("ESME", "CHTS v1.0"), day("01/01/17"))) == [
        "wrong_specification"
    ]
    assert reasons(check_installation(TABLES, device("ESME", "SMETS v9.9"), day("01/01/17"))) == [
        "unknown_version"
    ]
    # CADs meet no Technical Specification: no rule applies.
    assert check_installation(TABLES, device("CAD", "SMETS v9.9"), day("01/01/17")) == ()


def test_pre_notification_accepts_either_period() -> None:
    """A SMETS v1.1 meter after 12/12/17 may still be pre-notified as a replacement part
    (MVP, ¶31); one whose MVP has ended too may not."""
    tables = extended()
    assert check_pre_notification(tables, device("ESME", "SMETS v1.1"), day("01/01/18")) == ()
    assert (
        check_pre_notification(tables, device("ESME", "SMETS v2.0", "1.0"), day("01/01/19")) == ()
    )
    assert reasons(
        check_pre_notification(tables, device("ESME", "SMETS v2.0", "1.0"), day("01/07/19"))
    ) == ["no_validity"]


def test_gb_date_uses_uk_time() -> None:
    # 23:30 UTC on 12/12/17 is still 12/12/17 in winter; in summer it is the next day.
    assert gb_date(dt.datetime(2017, 12, 12, 23, 30, tzinfo=dt.UTC)) == day("12/12/17")
    assert gb_date(dt.datetime(2016, 9, 29, 23, 30, tzinfo=dt.UTC)) == day("30/09/16")


dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 12, 31))


@settings(deadline=None)
@given(start=dates, length=st.one_of(st.none(), st.integers(0, 20_000)), on=dates)
def test_period_contains_its_days_and_no_others(
    start: dt.date, length: int | None, on: dt.date
) -> None:
    end = None if length is None else start + dt.timedelta(days=length)
    if end is not None and end > dt.date(9999, 1, 1):
        return
    period = Period(start, end)
    expected = start.toordinal() <= on.toordinal() and (
        end is None or on.toordinal() <= end.toordinal()
    )
    assert period.contains(on) is expected
    left = period.days_left(on)
    if end is None:
        assert left is None
    else:
        assert left == max(0, end.toordinal() - on.toordinal())
        # The last day still in the period is `left` days ahead (when inside it).
        if period.contains(on):
            assert period.contains(on + dt.timedelta(days=left))
            assert not period.contains(on + dt.timedelta(days=left + 1))


@settings(deadline=None)
@given(
    spec=st.sampled_from(["SMETS", "CHTS"]),
    a=st.tuples(st.integers(0, 9999), st.integers(0, 9999)),
    b=st.tuples(st.integers(0, 9999), st.integers(0, 9999)),
    style=st.sampled_from(["{s} v{p}.{u}", "{s} V{p}.{u}", "{s} {p}.{u}", "{s}{p}.{u}"]),
)
def test_versions_parse_and_order(
    spec: str, a: tuple[int, int], b: tuple[int, int], style: str
) -> None:
    va = parse_ts_version(style.format(s=spec, p=a[0], u=a[1]))
    vb = parse_ts_version(style.format(s=spec.lower(), p=b[0], u=b[1]))
    assert (va.principal, va.sub) == a and va.spec == spec
    assert parse_ts_version(va.duis_text()) == va
    assert va.is_lesser_than(vb) is (a < b)
