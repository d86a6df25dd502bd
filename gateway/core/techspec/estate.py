"""The devices in the inventory as the version rules see them.

The inventory (gateway.core.registry) satisfies `Estate` structurally; this package reads it
through these protocols so that it imports nothing outside mmc/ and the standard library.
A device's versions come from the inventory when it records them, else from the product
tables by its model and firmware version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Literal, Protocol

import msgspec

from gateway.core.techspec.rules import DeviceVersions
from gateway.core.techspec.tables import Tables
from gateway.core.techspec.versions import (
    GbcsVersion,
    TsVersion,
    VersionError,
    parse_gbcs_version,
    parse_ts_version,
)
from mmc import applicability as types

# Devices that are in the premises: installed, whether or not commissioned yet.
IN_PREMISES: Final = frozenset({"commissioned", "installed_not_commissioned"})
# Devices that have left the premises: what a new device of the same type replaces.
REMOVED: Final = frozenset({"decommissioned", "withdrawn"})


class EstateDevice(Protocol):
    @property
    def device_id(self) -> str: ...
    @property
    def device_type(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def chf_id(self) -> str | None: ...
    @property
    def manufacturer(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def firmware_version(self) -> str | None: ...
    @property
    def technical_specification(self) -> str | None: ...
    @property
    def gbcs_version(self) -> str | None: ...
    @property
    def mpxn(self) -> str | None: ...
    @property
    def uprn(self) -> int | None: ...
    @property
    def postcode(self) -> str | None: ...
    @property
    def address_identifier(self) -> str | None: ...


class Estate(Protocol):
    def get(self, device_id: str) -> EstateDevice | None: ...
    def __iter__(self) -> Iterator[EstateDevice]: ...


def device_versions(
    tables: Tables, device: EstateDevice, *, firmware_version: str | None = None
) -> DeviceVersions | None:
    """The versions `device` meets, or would meet running `firmware_version`; None if
    neither the inventory nor the product tables say.

    The inventory's own version fields describe the firmware the device runs, so for
    another firmware version only the product tables can answer.
    """
    firmware = firmware_version or device.firmware_version
    product = None
    if device.manufacturer and device.model and firmware:
        product = tables.product(device.manufacturer, device.model, firmware)
    if firmware_version is not None:
        if product is None:
            return None
        return _versions(device, product.version, product.gbcs)
    try:
        if device.technical_specification:
            version = parse_ts_version(device.technical_specification)
        elif product is not None:
            version = product.version
        else:
            return None
        gbcs: GbcsVersion | None
        if device.gbcs_version:
            gbcs = parse_gbcs_version(device.gbcs_version)
        else:
            gbcs = product.gbcs if product is not None and product.version == version else None
    except VersionError:
        return None  # the registry validates these fields; an odd one means "not known"
    return _versions(device, version, gbcs)


def _versions(device: EstateDevice, version: TsVersion, gbcs: GbcsVersion | None) -> DeviceVersions:
    return DeviceVersions(
        device_type=device.device_type, version=version, gbcs=gbcs, device_id=device.device_id
    )


class Premises:
    """Who shares a Communications Hub: the devices of one premises, indexed once."""

    __slots__ = ("_members",)

    def __init__(self, estate: Iterable[EstateDevice]) -> None:
        members: dict[str, list[EstateDevice]] = {}
        for device in estate:
            hub = hub_of(device)
            if hub is not None:
                members.setdefault(hub, []).append(device)
        self._members = members

    def members(self, device: EstateDevice) -> list[EstateDevice]:
        """The other devices on the device's hub (the hub included), any status."""
        hub = hub_of(device)
        if hub is None:
            return []
        return [d for d in self._members.get(hub, ()) if d.device_id != device.device_id]

    def present(self, device: EstateDevice) -> list[EstateDevice]:
        """The other devices installed in the premises now."""
        return [d for d in self.members(device) if d.status in IN_PREMISES]


def hub_of(device: EstateDevice) -> str | None:
    return device.device_id if device.device_type == types.CHF else device.chf_id


InstallKind = Literal["auxiliary", "new_system", "component_replacement"]


class InstallContext(msgspec.Struct, frozen=True):
    """What commissioning a device means for the rules."""

    kind: InstallKind
    replaces: tuple[str, ...] = ()  # device IDs of removed devices of the same type


def installation_context(premises: Premises, device: EstateDevice) -> InstallContext:
    """IHD, PPMID, HCALCS: auxiliary (¶125). A Smart Meter or GPF on a hub that had a
    device of its type which has since left (decommissioned or withdrawn): a component
    of an installed system replaced, i.e. maintenance (¶31, §1.2 ¶34). Otherwise the
    device is installed as part of a new Smart Metering System (¶114, ¶123); a hub is
    always that, as the inventory does not link a hub to the one it replaced.
    """
    if device.device_type in (types.IHD, types.PPMID, types.HCALCS):
        return InstallContext("auxiliary")
    if device.device_type == types.CHF:
        return InstallContext("new_system")
    removed = tuple(
        d.device_id
        for d in premises.members(device)
        if d.device_type == device.device_type and d.status in REMOVED
    )
    if removed:
        return InstallContext("component_replacement", removed)
    return InstallContext("new_system")
