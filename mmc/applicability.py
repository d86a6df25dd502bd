"""Which device types each Service Reference Variant applies to, and how it treats devices.

The facts here are the same under every DUIS version this build serves (5.0 to 5.4
keep the same 129 SRVs), so they live in code rather than in each version's data file.

Basis, in order of weight:
1. The GBCS use cases the DCC's reference test data exercises for each SRV
   (../shared/gbcs/rtds, one folder per SRV and use case): the Business Target of each
   command shows the device type (in that data set 00-DB-..-A0 is an ESME, -A1 a GSME,
   -A2 the CHF, -A3 the GPF, -A4 a PPMID, -A5 an HCALCS and -A6 an auxiliary
   controller). For example GCS13b (4.1.4) targets both the GSME and the GPF, GCS61
   (4.17) the GPF, DBCH01-05 (6.28-6.32) the CHF.
2. The SRV names and the use-case families for SRVs the data set does not exercise:
   ECS* use cases are ESME-only, GCS* gas, CCS*/DBCH* the Communications Hub, CS* any
   device holding SMKI credentials (ESME, GSME, GPF, CHF, PPMID, HCALCS).
3. Non-device SRVs (5.x, 8.2-8.4, 8.13, 8.14.x, 11.1, 11.4, 12.x) name devices in the
   body; their entry gives the types those body devices may have.

Device type names are DUIS's (sr:DeviceType) plus TYPE2 for a Type 2 device (IHD or
CAD) whose kind the inventory does not record.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

ESME = "ESME"
GSME = "GSME"
GPF = "GPF"
CHF = "CHF"
PPMID = "PPMID"
HCALCS = "HCALCS"
IHD = "IHD"
CAD = "CAD"
TYPE2 = "TYPE2"

DEVICE_TYPES: frozenset[str] = frozenset({ESME, GSME, GPF, CHF, PPMID, HCALCS, IHD, CAD, TYPE2})

# Devices that hold SMKI credentials (security, firmware and identity SRVs).
_SMKI = frozenset({ESME, GSME, GPF, CHF, PPMID, HCALCS})
_METERS = frozenset({ESME, GSME})
_E = frozenset({ESME})
_G = frozenset({GSME})
# Gas reads: the GPF mirrors the GSME, and the reference data targets either.
_G_GPF = frozenset({GSME, GPF})
_E_G_GPF = frozenset({ESME, GSME, GPF})
_HUB = frozenset({CHF})
_HAN_JOINABLE = frozenset({ESME, GSME, GPF, PPMID, HCALCS})
_CRITICAL_JOINABLE = frozenset({ESME, GSME, HCALCS})
_ANY = DEVICE_TYPES
_REMOVABLE = DEVICE_TYPES - {CHF, GPF}  # the hub and its GPF leave by 8.14.x fault returns
_NONE: frozenset[str] = frozenset()

_APPLICABLE: dict[str, frozenset[str]] = {
    # 1.x tariff and price, 2.x prepayment, 3.x display/log: both meters (ECS + GCS).
    "1.1.1": _METERS, "1.1.2": _E, "1.2.1": _METERS, "1.2.2": _E,
    "1.5": _METERS, "1.6": _METERS, "1.7": _E,
    "2.1": _METERS, "2.2": _METERS, "2.3": _METERS, "2.5": _METERS,
    "3.1": _METERS, "3.2": frozenset({ESME, GSME, GPF}), "3.3": _METERS,
    "3.4": _METERS, "3.5": _METERS,
    # 4.x reads. TOU-with-blocks, export, max demand, load limit, power: ESME only.
    "4.1.1": _E_G_GPF, "4.1.2": _E_G_GPF, "4.1.3": _E, "4.1.4": _G_GPF,
    "4.2": _E, "4.3": _E_G_GPF,
    "4.4.2": _METERS, "4.4.3": _METERS, "4.4.4": _METERS, "4.4.5": _METERS,
    "4.6.1": _METERS, "4.6.2": _E,
    "4.8.1": _METERS, "4.8.2": _E, "4.8.3": _E,
    "4.10": _METERS, "4.11.1": _METERS, "4.11.2": _E,
    "4.12.1": _E, "4.12.2": _E, "4.13": _METERS, "4.14": _E_G_GPF,
    "4.15": _E, "4.16": _E, "4.17": frozenset({ESME, GPF}), "4.18": _E_G_GPF,
    # 5.x schedules (non-device): the body's DeviceID is the scheduled SRV's target.
    "5.1": _E_G_GPF, "5.2": _E_G_GPF, "5.3": _E_G_GPF,
    # 6.2.x configuration reads.
    "6.2.1": _E, "6.2.2": _E, "6.2.3": _METERS, "6.2.4": _SMKI, "6.2.5": _E,
    "6.2.7": _METERS, "6.2.8": _G, "6.2.9": _METERS, "6.2.10": _METERS,
    # 6.x configuration writes.
    "6.4.1": _E, "6.4.2": _E, "6.5": _E, "6.6": _G, "6.7": _G, "6.8": _METERS,
    "6.11": _METERS, "6.12": _E, "6.13": frozenset({ESME, GSME, GPF, CHF}),
    "6.14.1": _E, "6.14.2": _E,
    # The auxiliary controller scheduler also runs on a HAN-connected controller (-A6).
    "6.14.3": frozenset({ESME, HCALCS}),
    # 6.15-6.24 security credentials: any device holding SMKI credentials.
    "6.15.1": _SMKI, "6.15.2": _SMKI, "6.17": _SMKI,
    "6.18.1": _E, "6.18.2": _E, "6.20.1": _METERS, "6.20.2": _E,
    "6.21": frozenset({CHF, GPF}),  # handover of DCC-controlled devices
    "6.22": _METERS, "6.23": _SMKI - _HUB, "6.24.1": _SMKI, "6.24.2": _SMKI,
    "6.25": _E, "6.26": _E, "6.27": _E,
    # 6.28-6.32 sub-GHz hub configuration (DBCH use cases).
    "6.28": _HUB, "6.29": _HUB, "6.30": _HUB, "6.31": _HUB, "6.32": _HUB,
    # 7.x supply and auxiliary load control: the ESME commands its ALCS/HCALCS.
    "7.1": _E, "7.2": _METERS, "7.3": _METERS, "7.4": _METERS,
    "7.5": _E, "7.6": _E, "7.7": _E, "7.8": _E, "7.9": _E, "7.10": _E, "7.11": _E,
    "7.12": _E, "7.13": _E, "7.14": _E, "7.15": _E, "7.16": _E,
    # 8.x installation, commissioning and inventory.
    "8.1.1": _METERS,
    "8.2": _ANY, "8.3": _REMOVABLE, "8.4": _ANY,
    "8.5": _METERS, "8.6": _METERS,
    "8.7.1": _CRITICAL_JOINABLE, "8.7.2": _HAN_JOINABLE,
    "8.8.1": _CRITICAL_JOINABLE, "8.8.2": _HAN_JOINABLE,
    "8.9": _SMKI, "8.11": frozenset({CHF, GPF}), "8.12.1": _HUB, "8.12.2": frozenset({GPF}),
    "8.13": _SMKI,  # the body's OriginalRequestID names the device of the local command
    "8.14.1": _HUB, "8.14.2": _HUB, "8.14.3": _HUB, "8.14.4": _HUB,
    "9.1": _METERS,
    # 11.x firmware. The GPF's firmware is the hub's; PPMIDs update through 11.4.
    "11.1": frozenset({ESME, GSME, CHF, HCALCS}), "11.2": _SMKI,
    "11.3": frozenset({ESME, GSME, CHF, PPMID, HCALCS}), "11.4": frozenset({PPMID}),
    # 12.x DCC-level: the WAN matrix names no device; pre-notification introduces them.
    "12.1": _NONE, "12.2": _ANY,
    "14.1": _G,
}  # fmt: skip

APPLICABLE_DEVICE_TYPES: Mapping[str, frozenset[str]] = MappingProxyType(_APPLICABLE)


def applicable_device_types(srv_variant: str) -> frozenset[str]:
    """Device types the SRV may act on; empty for an SRV this table does not know."""
    return _APPLICABLE.get(srv_variant, _NONE)


class BodyDevices(enum.Enum):
    """What the gateway checks for the device IDs a request's body names.

    The RequestID target of a device SRV is always fully checked; this is about the
    others (OtherDeviceID of a join, the device list of 11.1, the DeviceID of 8.2 ...).
    """

    IGNORE = "ignore"  # not checked: 12.2 introduces devices the inventory lacks
    EXISTS = "exists"  # must be in the inventory (E19) and nothing more
    FULL = "full"  # as a target: inventory (E19), type (E11), eligibility (E4), status (E5)
    # Known ones for type (E11) and eligibility (E4) only: the Service Response names the
    # unknown and not-commissioned ones device by device (11.1/11.4 DSPUpdateFirmwareWarning
    # InvalidDeviceIDList, NotCommissionedDeviceIDList) and proceeds for the rest.
    LISTED = "listed"


# Device SRVs' body devices only need to exist (a join names a PPMID the supplier of
# the meter may not hold; an unjoin may name a device already withdrawn); non-device
# SRVs act on their body devices, so those get every device check.
_BODY_OVERRIDES: dict[str, BodyDevices] = {
    "8.2": BodyDevices.EXISTS,  # any User may look a device up (current and future suppliers)
    "12.1": BodyDevices.IGNORE,
    "12.2": BodyDevices.IGNORE,
    "11.1": BodyDevices.LISTED,
    "11.4": BodyDevices.LISTED,
}


def body_device_rule(srv_variant: str, non_device: bool) -> BodyDevices:
    rule = _BODY_OVERRIDES.get(srv_variant)
    if rule is not None:
        return rule
    return BodyDevices.FULL if non_device else BodyDevices.EXISTS


class StatusClass(enum.Enum):
    """The kind of SRV, as far as device status (E5) is concerned."""

    INVENTORY = "inventory"  # reads/updates the inventory itself
    REMOVAL = "removal"  # decommission, hub fault/no-fault returns
    COMMISSIONING = "commissioning"  # brings a pending/whitelisted device into service
    FIRMWARE = "firmware"  # also the cure for a suspended device
    SECURITY = "security"  # credentials: also used during SMKI recovery
    OPERATIONAL = "operational"  # everything else


_STATUS_CLASS: dict[str, StatusClass] = {
    **dict.fromkeys(("8.2", "8.4", "12.1", "12.2"), StatusClass.INVENTORY),
    **dict.fromkeys(("8.3", "8.14.3", "8.14.4"), StatusClass.REMOVAL),
    **dict.fromkeys(
        ("8.1.1", "8.7.1", "8.7.2", "8.11", "8.14.1", "8.14.2"), StatusClass.COMMISSIONING
    ),
    **dict.fromkeys(("11.1", "11.2", "11.3", "11.4"), StatusClass.FIRMWARE),
    **dict.fromkeys(
        ("6.15.1", "6.15.2", "6.17", "6.21", "6.23", "6.24.1", "6.24.2"), StatusClass.SECURITY
    ),
}


def status_class(srv_variant: str) -> StatusClass:
    return _STATUS_CLASS.get(srv_variant, StatusClass.OPERATIONAL)
