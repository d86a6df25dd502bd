"""Services the DCC answers itself (non-device SRVs, CV 8): built from the inventory.

8.2 Read Inventory answers with the device and its Smart Metering System (the
hub and everything on it); 11.1 / 11.4 firmware updates answer with the
warning lists the DCC computes before distributing an image; every other
non-device SRV is acknowledged with I0 and no content.
"""

from __future__ import annotations

from lxml import etree

from gateway.core.registry import Device, Inventory
from gateway.core.techspec.answers import inventory_versions
from gateway.core.techspec.tables import Tables
from mmc import responses
from mmc.codec import BodyFacts
from mmc.identifiers import Eui64

# Registry device types -> DUIS sr:DeviceType (the schema has no TYPE2; CAD is its name).
_DUIS_DEVICE_TYPE = {
    "ESME": "ESME",
    "GSME": "GSME",
    "CHF": "CHF",
    "GPF": "GPF",
    "PPMID": "PPMID",
    "IHD": "IHD",
    "HCALCS": "HCALCS",
    "TYPE2": "CAD",
    "CAD": "CAD",
}
_DUIS_STATUS = {
    "pending": "Pending",
    "whitelisted": "Whitelisted",
    "installed_not_commissioned": "InstalledNotCommissioned",
    "commissioned": "Commissioned",
    "decommissioned": "Decommissioned",
    "withdrawn": "Withdrawn",
    "suspended": "Suspended",
    "recovery": "Recovery",
    "recovered": "Recovered",
}
MAX_INVENTORY_DEVICES = 17  # sr:DSPInventory maxOccurs


class ServiceAnswer:
    __slots__ = ("code", "content")

    def __init__(self, code: str, content: str = "") -> None:
        self.code = code
        self.content = content


def answer_non_device(
    variant: str,
    body: etree._Element,
    facts: BodyFacts,
    inventory: Inventory,
    *,
    tables: Tables | None = None,
) -> ServiceAnswer:
    """`tables`: the TS Applicability Tables in force, whose product list gives the
    versions of devices the inventory records none for (8.2)."""
    if variant == "8.2":
        return _read_inventory(body, facts, inventory, tables)
    if variant in ("11.1", "11.4"):
        return _firmware_warning(facts, inventory)
    return ServiceAnswer("I0")


def _read_inventory(
    body: etree._Element, facts: BodyFacts, inventory: Inventory, tables: Tables | None
) -> ServiceAnswer:
    found: list[Device] = []
    if facts.device_ids:
        device = inventory.get(facts.device_ids[0])
        if device is not None:
            found = _smart_metering_system(device, inventory)
    else:
        wanted = _text(body, "MPxN")
        if wanted is not None:
            found = [d for d in inventory if d.mpxn == wanted]
            hubs = {d.chf_id for d in found if d.chf_id}
            found += [d for d in inventory if d.device_id in hubs]
    if not found:
        return ServiceAnswer("E19")
    entries = [_inventory_entry(d, tables) for d in found[:MAX_INVENTORY_DEVICES]]
    return ServiceAnswer("I0", responses.inventory(entries))


def _smart_metering_system(device: Device, inventory: Inventory) -> list[Device]:
    hub_id = device.device_id if device.device_type == "CHF" else device.chf_id
    if hub_id is None:
        return [device]
    members = [d for d in inventory if d.chf_id == hub_id or d.device_id == hub_id]
    members.sort(key=lambda d: (d.device_id != device.device_id, d.device_id))
    return members


def _inventory_entry(device: Device, tables: Tables | None) -> responses.InventoryDevice:
    # The versions the inventory records, else those the product tables give.
    smets_chts_version, gbcs_version = inventory_versions(tables, device)
    return responses.InventoryDevice(
        device_id=device.device_id,
        device_type=_DUIS_DEVICE_TYPE.get(device.device_type, "CAD"),
        device_status=_DUIS_STATUS.get(device.status),
        manufacturer=getattr(device, "manufacturer", None) or "0000",
        model=getattr(device, "model", None) or "0000",
        firmware_version=getattr(device, "firmware_version", None),
        smets_chts_version=smets_chts_version,
        import_mpxn=device.mpxn if device.device_type in ("ESME", "GSME") else None,
        gbcs_version=gbcs_version,
    )


def _firmware_warning(facts: BodyFacts, inventory: Inventory) -> ServiceAnswer:
    invalid: list[Eui64] = []
    not_commissioned: list[Eui64] = []
    for device_id in facts.device_ids:
        device = inventory.get(device_id)
        if device is None:
            invalid.append(device_id)
        elif device.status != "commissioned":
            not_commissioned.append(device_id)
    if not invalid and not not_commissioned:
        return ServiceAnswer("I0")
    return ServiceAnswer(
        "I0",
        responses.firmware_warning(
            {"InvalidDeviceIDList": invalid, "NotCommissionedDeviceIDList": not_commissioned}
        ),
    )


def _text(body: etree._Element, local_name: str) -> str | None:
    for element in body.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == local_name:
            return (element.text or "").strip() or None
    return None
