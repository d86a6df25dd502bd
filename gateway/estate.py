"""The default estate: the Users and devices of the DCC's test data, for a dev gateway.

On first start the gateway writes these two files to its state directory (and never
overwrites them afterwards: they are then the operator's). They match the IDs used by
the RTDS request templates, the GBCS reference vectors and the test PKI, so every
template in ../shared/duis/samples/requests/ is accepted unchanged.

Choices the test data forces, and why:
- 90-B3-D5-1F-30-01-00-00 (supplier-1) also holds OU: the 9.1 Request Customer
  Identification Number template is sent from it, and the SRV matrix makes 9.1
  eligible for OU only. One ID in several roles is allowed (consultation ¶134); it does
  mean this ID passes E4 for every SRV that lists OU.
- The load controller gets OU: the SRVs it needs (7.7, 7.11, 7.14, 7.15) list OU, and
  DUIS has no load-controller User Role. It is its own party, so supplier-1 and it do
  not both hold OU within one party (the one-ID-per-role rule).
- 90-B3-D5-1F-30-00-00-02 is the access control broker and the DCC's own EUI-64 (the
  target of every non-device request). It is registered with no User Role: a request
  that claims it as originator gets E1.
- Device types follow the GBCS reference vectors (see mmc.applicability); -A6 is the
  auxiliary controller the APC use cases address, which DUIS 5.4's DeviceType has no
  value for, so it is recorded as an HCALCS.
- 00-DB-12-34-56-78-90-99 is the Type 2 device (an IHD) the 8.8.1 Unjoin template names
  as OtherDeviceID; a join or unjoin body device must be in the inventory.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from gateway.registry import Inventory, UserRegistry, decode_inventory, decode_users
from mmc.identifiers import Eui64

USERS_FILE_NAME = "users.toml"
INVENTORY_FILE_NAME = "inventory.toml"
DCC_EUI64: Eui64 = "90-B3-D5-1F-30-00-00-02"

DEFAULT_USERS_TOML = """\
# DUIS Users of the development estate (gateway.estate). Edit freely: the gateway
# writes this file only when it is missing.

[[users]]
user_id = "90-B3-D5-1F-30-01-00-00"
party = "supplier-1"
# OU too: the RTDS 9.1 template (eligible for OU only) is sent from this ID.
roles = ["IS", "GS", "OU"]
status = "active"

[[users]]
user_id = "90-B3-D5-1F-30-02-00-00"
party = "network-operator"
roles = ["ED", "GT"]
status = "active"

[[users]]
user_id = "90-B3-D5-1F-30-03-00-00"
party = "supplier-2"
roles = ["IS", "GS"]
status = "active"

[[users]]
user_id = "90-B3-D5-1F-30-01-00-08"
party = "load-controller"
roles = ["OU"]
status = "active"

[[users]]
# The access control broker: the DCC's own EUI-64, target of non-device requests.
# No User Role, so it cannot originate Service Requests.
user_id = "90-B3-D5-1F-30-00-00-02"
party = "dcc"
roles = []
status = "active"
"""

_SUPPLIER = "90-B3-D5-1F-30-01-00-00"
_NETWORK = "90-B3-D5-1F-30-02-00-00"
_FROM = "2015-01-01T00:00:00Z"


def _device(
    suffix: str,
    device_type: str,
    roles: list[tuple[str, str]],
    *,
    mpxn: str | None = None,
    hub: bool = False,
) -> str:
    lines = [
        "[[devices]]",
        f'device_id = "00-DB-12-34-56-78-90-{suffix}"',
        f'device_type = "{device_type}"',
        'status = "commissioned"',
    ]
    if mpxn is not None:
        lines.append(f'mpxn = "{mpxn}"')
    if hub:
        lines += ['han_variant = "Dual Band"', 'wan_variant = "4G Central"']
    else:
        lines.append('chf_id = "00-DB-12-34-56-78-90-A2"')
    lines.append("eligibility = [")
    for role, user_id in roles:
        lines.append(f'  {{ role = "{role}", user_id = "{user_id}", effective_from = {_FROM} }},')
    lines.append("]")
    return "\n".join(lines) + "\n"


_ELECTRIC = [("IS", _SUPPLIER), ("ED", _NETWORK)]
_GAS = [("GS", _SUPPLIER), ("GT", _NETWORK)]
_HOME = [("IS", _SUPPLIER), ("GS", _SUPPLIER)]

DEFAULT_INVENTORY_TOML = (
    "# Smart Metering Inventory of the development estate (gateway.estate): one home on\n"
    "# one Communications Hub, supplier-1 its supplier, network-operator its ED and GT.\n\n"
    + "\n".join(
        [
            _device("A0", "ESME", _ELECTRIC, mpxn="1312345678111"),
            _device("A1", "GSME", _GAS, mpxn="1234567890"),
            _device("A2", "CHF", _ELECTRIC + _GAS, hub=True),
            _device("A3", "GPF", _GAS),
            _device("A4", "PPMID", _HOME),
            _device("A5", "HCALCS", _ELECTRIC),
            # The auxiliary controller (APC) of the reference vectors, as an HCALCS.
            _device("A6", "HCALCS", _ELECTRIC),
            # The Type 2 device the 8.8.1 Unjoin template unjoins from the ESME.
            _device("99", "IHD", _HOME),
        ]
    )
)


def default_users() -> UserRegistry:
    return decode_users(DEFAULT_USERS_TOML.encode(), fmt="toml", source="<default users>")


def default_inventory() -> Inventory:
    return decode_inventory(
        DEFAULT_INVENTORY_TOML.encode(), fmt="toml", source="<default inventory>"
    )


def write_default_estate(state_dir: Path) -> tuple[Path, Path]:
    """Write users.toml and inventory.toml into state_dir unless they already exist.

    Blocking (call it at start-up, or through trio.to_thread). Each file is written to
    a temporary name, fsynced and renamed, so a crash never leaves half a file.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    users = state_dir / USERS_FILE_NAME
    inventory = state_dir / INVENTORY_FILE_NAME
    for path, text in ((users, DEFAULT_USERS_TOML), (inventory, DEFAULT_INVENTORY_TOML)):
        if not path.exists():
            _write_atomically(path, text.encode())
    return users, inventory


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class DevUser(msgspec.Struct, frozen=True):
    """One identity the dev PKI generator issues certificates for."""

    eui64: Eui64
    label: str
    role_code: str  # SMKI Organisation certificate subject OU, two hex digits


def dev_users() -> list[DevUser]:
    """The estate's identities with their certificate role codes (SPEC: OU codes)."""
    return [
        DevUser("90-B3-D5-1F-30-01-00-00", "supplier-1", "02"),
        DevUser("90-B3-D5-1F-30-02-00-00", "network-operator", "03"),
        DevUser("90-B3-D5-1F-30-03-00-00", "supplier-2", "02"),
        DevUser("90-B3-D5-1F-30-01-00-08", "load-controller", "08"),
        DevUser(DCC_EUI64, "access-control-broker", "04"),
    ]
