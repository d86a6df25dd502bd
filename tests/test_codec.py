"""Body facts: what access control, thresholds and dispatch read out of a request body."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mmc.catalogue import load_catalogue
from mmc.codec import MAX_FACT_ELEMENTS, BodyError, extract_body_facts

SR = "http://www.dccinterface.co.uk/ServiceUserGateway"
EUI = st.lists(st.integers(0, 255), min_size=8, max_size=8).map(
    lambda b: "-".join(f"{x:02X}" for x in b)
)


def body(inner: str) -> etree._Element:
    return etree.fromstring(f'<sr:Body xmlns:sr="{SR}"><sr:Thing>{inner}</sr:Thing></sr:Body>')[0]


@settings(max_examples=100, deadline=None)
@given(first=EUI, listed=st.lists(EUI, min_size=1, max_size=5), lower=st.booleans())
def test_device_ids_are_read_canonical_and_once(first: str, listed: list[str], lower: bool) -> None:
    text = ",".join(x.lower() if lower else x for x in listed)
    facts = extract_body_facts(
        body(f"<sr:DeviceID>{first.lower()}</sr:DeviceID><sr:DeviceIDList>{text}</sr:DeviceIDList>")
    )
    assert facts.device_ids == tuple(dict.fromkeys([first, *listed]))


def test_execution_time_original_request_and_limited_values() -> None:
    facts = extract_body_facts(
        body(
            "<sr:ExecutionDateTime>2030-01-02T03:04:05Z</sr:ExecutionDateTime>"
            "<sr:OriginalRequestID>90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:7</sr:OriginalRequestID>"
            "<sr:BlockPrice>12.5</sr:BlockPrice><sr:BlockPrice>99</sr:BlockPrice>"
        )
    )
    assert facts.execution_datetime == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert facts.original_request_target == "00-DB-12-34-56-78-90-A0"
    assert facts.device_ids == ("00-DB-12-34-56-78-90-A0",)
    # Smallest and largest: a min bound judges the one, a max bound the other.
    assert facts.attributes == {"price": (12.5, 99.0)}


@pytest.mark.parametrize(
    "inner",
    [
        "<sr:DeviceID>not-an-eui</sr:DeviceID>",
        "<sr:ExecutionDateTime>yesterday</sr:ExecutionDateTime>",
        "<sr:OriginalRequestID>a:b:c</sr:OriginalRequestID>",
        "<sr:TOUPrice>lots</sr:TOUPrice>",
        "<sr:X/>" * (MAX_FACT_ELEMENTS + 1),
    ],
)
def test_bad_values_are_refused_by_name(inner: str) -> None:
    with pytest.raises(BodyError):
        extract_body_facts(body(inner))


def test_values_are_judged_by_the_request_version() -> None:
    inner = body("<sr:CSPRegion>4G North</sr:CSPRegion>")
    for version, allowed in (("5.1", False), ("5.3", True), ("5.4", True)):
        catalogue = load_catalogue(version)
        if allowed:
            extract_body_facts(inner, catalogue.value_set_elements, catalogue.value_sets)
        else:
            with pytest.raises(BodyError, match="not defined in this DUIS version"):
                extract_body_facts(inner, catalogue.value_set_elements, catalogue.value_sets)


def named(body_element: str, inner: str) -> etree._Element:
    return etree.fromstring(
        f'<sr:Body xmlns:sr="{SR}"><sr:{body_element}>{inner}</sr:{body_element}></sr:Body>'
    )[0]


A0, A2, B = "00-DB-12-34-56-78-90-A0", "00-DB-12-34-56-78-90-A2", "00-DB-12-34-56-78-90-95"


@pytest.mark.parametrize(
    ("body_element", "inner", "subjects", "references"),
    [
        # 8.14.3: the hub is the subject, the meter it served a reference (the RTDS template
        # got E11 when OtherDeviceID was checked as a target).
        ("CHFFaultReturn", f"<sr:DeviceID>{A2}</sr:DeviceID><sr:OtherDeviceID>{A0}"
         "</sr:OtherDeviceID>", (A2,), (A0,)),
        # 8.11 (a device request to the CHF): the device added to its log is a reference.
        ("UpdateHANDeviceLog", f"<sr:AddDeviceToCHFWhitelist><sr:DeviceID>{A0}</sr:DeviceID>"
         "</sr:AddDeviceToCHFWhitelist>", (), (A0,)),
        ("JoinService", f"<sr:OtherDeviceID>{A0}</sr:OtherDeviceID>", (), (A0,)),
        ("RestoreHANDeviceLog", f"<sr:OldCHFID>{B}</sr:OldCHFID>", (), (B,)),
        ("RestoreGPFDeviceLog", f"<sr:OldGPFID>{B}</sr:OldGPFID>", (), (B,)),
        ("UpdateDeviceConfigurationALCScheduler", f"<sr:SwitchTypeAndId><sr:HCALCS>{B}"
         "</sr:HCALCS></sr:SwitchTypeAndId>", (), (B,)),
        ("DecommissionDevice", f"<sr:DeviceID>{A0}</sr:DeviceID>", (A0,), ()),
        ("CreateSchedule", f"<sr:DeviceID>{A0}</sr:DeviceID>", (A0,), ()),
    ],
)  # fmt: skip
def test_subjects_and_references_follow_the_xsd_table(
    body_element: str, inner: str, subjects: tuple[str, ...], references: tuple[str, ...]
) -> None:
    facts = extract_body_facts(named(body_element, inner))
    assert facts.device_ids == subjects
    assert facts.reference_ids == references
