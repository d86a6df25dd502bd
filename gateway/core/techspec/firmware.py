"""Update Firmware (11.1): which listed devices the image may go to, and why not the rest.

The DCC answers with a `DSPUpdateFirmwareWarning` naming, list by list, the devices in
`DeviceIDList` it will not distribute the image to, and proceeds for the others. The
version rules decide the last two lists: the image's version (from the product tables,
by the device's model and the image's firmware version) must be one the device may be
maintained to (rules.check_maintenance).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from typing import Final, Literal

import msgspec

from gateway.core.techspec.estate import Estate, EstateDevice, Premises, device_versions
from gateway.core.techspec.rules import DeviceVersions, Reason, check_maintenance
from gateway.core.techspec.tables import Tables

WarningList = Literal[
    "InvalidDeviceIDList",
    "NotCommissionedDeviceIDList",
    "NotApplicableFirmwareDeviceIDList",
    "OtherRequestInProgressList",
    "InvalidGBCSVersionList",
]
WARNING_LISTS: Final[tuple[WarningList, ...]] = (  # sr:DSPUpdateFirmwareWarning order
    "InvalidDeviceIDList",
    "NotCommissionedDeviceIDList",
    "NotApplicableFirmwareDeviceIDList",
    "OtherRequestInProgressList",
    "InvalidGBCSVersionList",
)
FirmwareReason = (
    Reason
    | Literal["unknown_device", "not_commissioned", "request_in_progress", "not_for_this_model"]
)
_LIST_FOR_RULE: Final[dict[Reason, WarningList]] = {
    "gbcs_not_applicable": "InvalidGBCSVersionList",  # ¶117
}


class DeviceRefusal(msgspec.Struct, frozen=True):
    device_id: str
    warning_list: WarningList
    reason: FirmwareReason
    detail: str


class FirmwareDecision(msgspec.Struct, frozen=True):
    proceed: tuple[str, ...]  # device IDs the image goes to, in request order
    refused: tuple[DeviceRefusal, ...]

    def warning_lists(self) -> dict[str, list[str]]:
        """For mmc.responses.firmware_warning: list name -> device IDs (non-empty only)."""
        lists: dict[str, list[str]] = {}
        for refusal in self.refused:
            lists.setdefault(refusal.warning_list, []).append(refusal.device_id)
        return lists


def firmware_update(
    tables: Tables,
    estate: Estate,
    device_ids: Iterable[str],
    firmware_version: str,
    on: dt.date,
    *,
    in_progress: Collection[str] = (),
    premises: Premises | None = None,
) -> FirmwareDecision:
    """Decide, device by device, whether the image (`firmware_version`) may be applied.

    `in_progress`: devices with another firmware update under way. Compatibility (¶126)
    is judged on the premises as it will be afterwards: devices of the same request that
    pass the per-device checks count with the image's version.
    """
    premises = premises if premises is not None else Premises(estate)
    refused: list[DeviceRefusal] = []
    candidates: dict[str, tuple[EstateDevice, DeviceVersions, DeviceVersions | None]] = {}
    ordered = list(dict.fromkeys(device_ids))  # once each, in request order
    for device_id in ordered:
        device = estate.get(device_id)
        if device is None:
            refused.append(
                _refuse(device_id, "InvalidDeviceIDList", "unknown_device", "not in the inventory")
            )
        elif device.status != "commissioned":
            refused.append(
                _refuse(
                    device_id,
                    "NotCommissionedDeviceIDList",
                    "not_commissioned",
                    f"device status is {device.status}",
                )
            )
        elif device_id in in_progress:
            refused.append(
                _refuse(
                    device_id,
                    "OtherRequestInProgressList",
                    "request_in_progress",
                    "another firmware update is in progress",
                )
            )
        else:
            target = device_versions(tables, device, firmware_version=firmware_version)
            if target is None:
                refused.append(
                    _refuse(
                        device_id,
                        "NotApplicableFirmwareDeviceIDList",
                        "not_for_this_model",
                        f"no product {device.manufacturer} {device.model} with firmware "
                        f"{firmware_version} in the tables",
                    )
                )
            else:
                candidates[device_id] = (device, target, device_versions(tables, device))
    after = {device_id: target for device_id, (_, target, _) in candidates.items()}
    proceed: list[str] = []
    for device_id, (device, target, current) in candidates.items():
        others = [
            versions
            for other in premises.present(device)
            if (versions := after.get(other.device_id) or device_versions(tables, other))
        ]
        found = check_maintenance(tables, target, on, previous=current, premises=others)
        if not found:
            proceed.append(device_id)
            continue
        first = found[0]
        warning = _LIST_FOR_RULE.get(first.reason, "NotApplicableFirmwareDeviceIDList")
        refused.append(_refuse(device_id, warning, first.reason, "; ".join(map(str, found))))
    position = {device_id: index for index, device_id in enumerate(ordered)}
    refused.sort(key=lambda r: position[r.device_id])  # each list in request order
    return FirmwareDecision(tuple(proceed), tuple(refused))


def _refuse(
    device_id: str, warning: WarningList, reason: FirmwareReason, detail: str
) -> DeviceRefusal:
    return DeviceRefusal(device_id, warning, reason, detail)
