"""Admin input checks on their own: every value is either valid or refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.edge import admin_params as check
from gateway.edge.admin_params import InvalidInput, parse_query


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999999", "-99999999999999999999999", "0", "-1", "9223372036854775808"],
)
def test_event_refs_outside_sqlite_int64_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="QuarantineEventRef must be from 1 to"):
        check.event_ref(text)


def test_event_refs_in_range_are_accepted() -> None:
    assert check.event_ref("1") == 1
    assert check.event_ref("9223372036854775807") == 2**63 - 1


@pytest.mark.parametrize("text", ["1e999", "nan", "NaN", "inf", "-inf", "-1", "1e300", "x", ""])
def test_seconds_must_be_finite_and_in_range(text: str) -> None:
    with pytest.raises(InvalidInput, match="min_age_seconds must be"):
        check.seconds(text, "min_age_seconds", 3.2e9)


def test_seconds_in_range_are_accepted() -> None:
    assert check.seconds("0", "s", 10) == 0.0
    assert check.seconds("2.5", "s", 10) == 2.5


def test_unknown_and_repeated_query_parameters_are_named() -> None:
    with pytest.raises(InvalidInput, match="unknown query parameter 'bogus'"):
        parse_query("state=held&bogus=1", ("state",))
    with pytest.raises(InvalidInput, match="'state' given more than once"):
        parse_query("state=held&state=deleted", ("state",))
    with pytest.raises(InvalidInput, match="more than 16 query parameters"):
        parse_query("&".join(f"a{i}=1" for i in range(40)), ("a0",))
    assert parse_query("state=held&user_id=", ("state", "user_id")) == {
        "state": "held",
        "user_id": "",
    }


def test_user_ids_and_srvs_have_their_formats() -> None:
    assert check.user_id("90-b3-d5-1f-30-01-00-00") == "90-B3-D5-1F-30-01-00-00"
    with pytest.raises(InvalidInput, match="user_id must be an EUI-64"):
        check.user_id("90B3D51F30010000")
    assert check.srv("4.1.1") == "4.1.1"
    with pytest.raises(InvalidInput, match="srv must be"):
        check.srv("4.1.1' OR 1=1")


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=60))
def test_any_text_is_a_value_or_a_reason_never_another_error(text: str) -> None:
    for parse in (
        check.event_ref,
        lambda t: check.seconds(t, "s", 3.2e9),
        lambda t: check.integer(t, "limit", 1, 1000),
        check.user_id,
        check.srv,
        lambda t: parse_query(t, ("user_id", "state")),
    ):
        try:
            parse(text)
        except InvalidInput as exc:
            assert str(exc)
