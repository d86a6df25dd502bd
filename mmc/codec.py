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

# Which device IDs of a body the request acts on (subjects) and which it only names
# (references), decided per element from the XSDs: every element typed sr:EUI,
# sr:DeviceIDList or sr:RequestIDType in a request body of DUIS 5.0, 5.1, 5.3a and 5.4
# (the same eleven in each), by the complex type that declares it:
#
#   element                  declared in (SRV)                         role
#   DeviceID                 ReadInventory (8.2), DecommissionDevice   subject: the device the
#                            (8.3), UpdateInventory (8.4), ServiceOptIn non-device service acts
#                            (8.6), CHFInstallSuccessSMWAN, ...NoSMWAN, on
#                            CHFFaultReturn, CHFNoFaultReturn (8.14.x),
#                            DevicePrenotification (12.2), schedules
#                            (DSPSchedule 5.1, ReadSchedule 5.2,
#                            DeleteSchedule 5.3)
#   DeviceID                 UpdateHANDeviceLog (8.11, CV 1 to a CHF)  reference: the device
#                                                                      added to or removed from
#                                                                      the hub's whitelist
#   DeviceIDList             UpdateFirmware (11.1), UpdatePPMIDFirmware subjects: the
#                            (11.4)                                    distribution list
#   OriginalRequestID        ReturnLocalCommandResponse (8.13)         its target is the subject
#   OtherDeviceID            JoinOrUnjoinDevice (8.7.x, 8.8.x)         reference: the other
#                                                                      party of the (un)join
#   OtherDeviceID            CHFFaultReturn (8.14.3)                   reference: the meter the
#                                                                      returned hub served
#   OldCHFID / OldGPFID      RestoreHANDeviceLog (8.12.1) /            reference: the device
#                            RestoreGPFDeviceLog (8.12.2)              being replaced
#   HCALCS                   SwitchTypeAndId (6.14.2)                  reference: a switch of
#                                                                      the ESME's schedule
#   AssociatedGPFDeviceID    DevicePrenotification (12.2)              reference (12.2 checks
#                                                                      no device anyway)
#
# Access control (gateway/core/access.py) gives subjects of a non-device request every
# device check; references (and every body ID of a device request, whose subject is the
# RequestID target) need only be in the inventory.
_SUBJECT_ELEMENTS = frozenset({"DeviceID"})
_REFERENCE_ELEMENTS = frozenset(
    {"OtherDeviceID", "OldCHFID", "OldGPFID", "HCALCS", "AssociatedGPFDeviceID"}
)
# (body element, element) pairs where a subject's name is a reference.
_REFERENCE_IN_BODY = frozenset({("UpdateHANDeviceLog", "DeviceID")})
_DEVICE_LIST_ELEMENTS = frozenset({"DeviceIDList"})
_EXECUTION_ELEMENTS = frozenset({"ExecutionDateTime"})
MAX_FACT_ELEMENTS = 4096
_NO_VALUE_SETS: Mapping[str, str] = {}  # bodies are small; refuse pathological ones early


class BodyFacts(msgspec.Struct, frozen=True):
    device_ids: tuple[Eui64, ...] = ()  # subjects: the devices a non-device request acts on
    reference_ids: tuple[Eui64, ...] = ()  # devices the body only names (see the table above)
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
    references: list[Eui64] = []
    body_name = _local_name(body.tag) if isinstance(body.tag, str) else ""
    execution: dt.datetime | None = None
    original_target: Eui64 | None = None
    attributes: dict[str, tuple[float, float]] = {}
    for count, element in enumerate(body.iter(), start=1):
        if count > MAX_FACT_ELEMENTS:
            raise BodyError(f"body has more than {MAX_FACT_ELEMENTS} elements")
        tag = element.tag
        if not isinstance(tag, str):
            continue
        name = _local_name(tag)  # cheaper than etree.QName on the hot path
        text = (element.text or "").strip()
        value_set = value_set_elements.get(name)
        if value_set is not None and value_sets is not None:
            allowed = value_sets.get(value_set)
            if allowed is not None and text not in allowed:
                raise BodyError(f"{name} value {text[:40]!r} is not defined in this DUIS version")
        if name in _SUBJECT_ELEMENTS and (body_name, name) not in _REFERENCE_IN_BODY:
            devices.append(_eui(text, name))
        elif name in _REFERENCE_ELEMENTS or name in _SUBJECT_ELEMENTS:
            references.append(_eui(text, name))
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
        reference_ids=tuple(dict.fromkeys(references)),
        execution_datetime=execution,
        original_request_target=original_target,
        attributes=attributes,
    )


def _local_name(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


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
