"""The facts the version and Install and Leave rules need, read from request bodies.

XSD validation normally guarantees these elements, but it is optional (`duis.xsd_dir`), so
every reader checks what it uses and raises BodyFactError naming the element: the peer
sent something wrong.
"""

from __future__ import annotations

import datetime as dt

import msgspec
from lxml import etree

from gateway.core.techspec.coverage import AddressKey, PremisesKey, UprnKey
from mmc.identifiers import Eui64, IdentifierError, parse_eui64

MAX_UPRN = 999_999_999_999  # sr:UPRN: at most 12 digits


class BodyFactError(ValueError):
    """A body lacks an element the rules need, or has it in the wrong form."""


class PreNotification(msgspec.Struct, frozen=True, kw_only=True):
    """12.2 Device Pre-notification (sr:DevicePrenotification)."""

    device_id: Eui64
    manufacturer: str
    model: str
    device_type: str
    smets_chts_version: str | None = None
    firmware_version: str | None = None


class NoWanInstall(msgspec.Struct, frozen=True, kw_only=True):
    """8.14.2 Communications Hub Status Update - Install No SM WAN."""

    hub_id: Eui64
    mpxn: str
    install_type: str
    installed_at: dt.datetime | None = None


class FirmwareUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """11.1 Update Firmware (the image itself is not needed by the rules)."""

    firmware_version: str
    device_ids: tuple[Eui64, ...]


def read_pre_notification(body: etree._Element) -> PreNotification:
    node = _one(body, "DevicePrenotification")
    return PreNotification(
        device_id=_eui(node, "DeviceID"),
        manufacturer=_required(node, "DeviceManufacturer"),
        model=_required(node, "DeviceModel"),
        device_type=_required(node, "DeviceType"),
        smets_chts_version=_optional(node, "SMETSCHTSVersion"),
        firmware_version=_optional(node, "FirmwareVersion"),
    )


def read_wan_query(body: etree._Element) -> PremisesKey:
    """12.1 Request WAN Matrix: a UPRN or a partial address (postcode, identifier)."""
    node = _one(body, "RequestWANMatrix")
    uprn = _optional(node, "UPRN")
    if uprn is not None:
        digits = uprn.lstrip("0")
        if not uprn.isdigit() or not digits or len(digits) > len(str(MAX_UPRN)):
            raise BodyFactError(f"UPRN is not a positive number of up to 12 digits: {uprn[:20]!r}")
        return UprnKey(int(digits))
    address = _one(node, "PartialAddress")
    return AddressKey(_required(address, "PostCode"), _optional(address, "AddressIdentifier") or "")


def read_no_wan_install(body: etree._Element) -> NoWanInstall:
    node = _one(body, "CHFInstallSuccessNoSMWAN")
    installed = _optional(node, "InstallDateTime")
    installed_at = None
    if installed is not None:
        try:
            installed_at = dt.datetime.fromisoformat(installed.replace("Z", "+00:00"))
        except ValueError:
            raise BodyFactError(f"InstallDateTime is not a date-time: {installed[:40]!r}") from None
        if installed_at.tzinfo is None:
            installed_at = installed_at.replace(tzinfo=dt.UTC)  # xs:dateTime without zone
    return NoWanInstall(
        hub_id=_eui(node, "DeviceID"),
        mpxn=_required(node, "MPxN"),
        install_type=_required(node, "CHFInstallType"),
        installed_at=installed_at,
    )


def read_firmware_update(body: etree._Element) -> FirmwareUpdate:
    node = _one(body, "UpdateFirmware")
    listed = _required(node, "DeviceIDList")
    try:
        ids = tuple(parse_eui64(part.strip()) for part in listed.split(","))
    except IdentifierError as exc:
        raise BodyFactError(f"DeviceIDList: {exc}") from None
    return FirmwareUpdate(firmware_version=_required(node, "FirmwareVersion"), device_ids=ids)


def _one(parent: etree._Element, local_name: str) -> etree._Element:
    if etree.QName(parent).localname == local_name:
        return parent
    for element in parent.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == local_name:
            return element
    raise BodyFactError(f"no {local_name} element")


def _optional(parent: etree._Element, local_name: str) -> str | None:
    for element in parent:
        if isinstance(element.tag, str) and etree.QName(element).localname == local_name:
            return (element.text or "").strip() or None
    return None


def _required(parent: etree._Element, local_name: str) -> str:
    value = _optional(parent, local_name)
    if value is None:
        raise BodyFactError(f"{etree.QName(parent).localname} has no {local_name}")
    return value


def _eui(parent: etree._Element, local_name: str) -> Eui64:
    try:
        return parse_eui64(_required(parent, local_name))
    except IdentifierError as exc:
        raise BodyFactError(f"{local_name}: {exc}") from None
