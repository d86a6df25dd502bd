"""Read the facts the gateway acts on out of a request body.

Only what access control, thresholds and dispatch need is decoded into a
Struct; the body itself travels on as the (signed) XML it arrived as.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

import msgspec
from lxml import etree

from mmc.identifiers import Eui64, IdentifierError, parse_eui64, parse_request_id
from mmc.limited_attributes import LIMITED_ATTRIBUTES

# Elements that name a device, across the 129 bodies.
_DEVICE_ELEMENTS = frozenset(
    {"DeviceID", "OtherDeviceID", "CHFID", "GPFDeviceID", "PPMIDDeviceID", "MeterDeviceID"}
)
_DEVICE_LIST_ELEMENTS = frozenset({"DeviceIDList"})
_EXECUTION_ELEMENTS = frozenset({"ExecutionDateTime"})
MAX_FACT_ELEMENTS = 4096
_NO_VALUE_SETS: Mapping[str, str] = {}  # bodies are small; refuse pathological ones early


class BodyFacts(msgspec.Struct, frozen=True):
    device_ids: tuple[Eui64, ...] = ()
    execution_datetime: dt.datetime | None = None
    original_request_target: Eui64 | None = None
    # Limited data values by attribute name: (smallest, largest) of the values the body
    # carries (a tariff has many prices), so both a min and a max bound are judged.
    attributes: dict[str, tuple[float, float]] = {}


class BodyError(ValueError):
    """A body value the gateway relies on has the wrong format."""


def extract_body_facts(
    body: etree._Element,
    value_set_elements: Mapping[str, str] = _NO_VALUE_SETS,
    value_sets: Mapping[str, frozenset[str]] | None = None,
) -> BodyFacts:
    """Decode the facts, and refuse a value its version's value set lacks.

    `value_set_elements`/`value_sets` come from the request version's catalogue:
    they hold only the enumerations that differ between versions (a 4G CSP region,
    SRV 4.2 as a DCC-scheduled service from 5.3), so a request is judged by the
    version it names even when no XSD is configured.
    """
    devices: list[Eui64] = []
    execution: dt.datetime | None = None
    original_target: Eui64 | None = None
    attributes: dict[str, tuple[float, float]] = {}
    for count, element in enumerate(body.iter(), start=1):
        if count > MAX_FACT_ELEMENTS:
            raise BodyError(f"body has more than {MAX_FACT_ELEMENTS} elements")
        tag = element.tag
        if not isinstance(tag, str):
            continue
        name = tag[tag.rfind("}") + 1 :]  # cheaper than etree.QName on the hot path
        text = (element.text or "").strip()
        value_set = value_set_elements.get(name)
        if value_set is not None and value_sets is not None:
            allowed = value_sets.get(value_set)
            if allowed is not None and text not in allowed:
                raise BodyError(f"{name} value {text[:40]!r} is not defined in this DUIS version")
        if name in _DEVICE_ELEMENTS:
            devices.append(_eui(text, name))
        elif name in _DEVICE_LIST_ELEMENTS:
            devices.extend(_eui(part.strip(), name) for part in text.split(",") if part.strip())
        elif name in _EXECUTION_ELEMENTS and text:
            execution = _datetime(text, name)
        elif name == "OriginalRequestID" and text:
            try:
                original_target = parse_request_id(text).target
            except IdentifierError as exc:
                raise BodyError(f"OriginalRequestID: {exc}") from None
        elif name in LIMITED_ATTRIBUTES and text:
            key = LIMITED_ATTRIBUTES[name]
            value = _number(text, name)
            low, high = attributes.get(key, (value, value))
            attributes[key] = (min(low, value), max(high, value))
    if original_target is not None:
        devices.append(original_target)
    return BodyFacts(
        device_ids=tuple(dict.fromkeys(devices)),
        execution_datetime=execution,
        original_request_target=original_target,
        attributes=attributes,
    )


def _eui(text: str, name: str) -> Eui64:
    try:
        return parse_eui64(text)
    except IdentifierError as exc:
        raise BodyError(f"{name}: {exc}") from None


def _datetime(text: str, name: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BodyError(f"{name} is not an xs:dateTime: {text[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _number(text: str, name: str) -> float:
    try:
        return float(Decimal(text))
    except InvalidOperation:
        raise BodyError(f"{name} is not a number: {text[:40]!r}") from None
